import gen_train_a, gen_train_b, gen_train_c, gen_train_d, gen_train_e, gen_train_g, gen_train_h, gen_train_f
