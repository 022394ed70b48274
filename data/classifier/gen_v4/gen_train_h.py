from gen_train_a import U, S, M, add, many
ex = "extraction"
for sys, inp in [
 ("In this task, you are given a sentence. Your task is to identify the name of the city mentioned in it.", "My cousin moved to Valencia last spring and loves the beaches there."),
 ("In this task, you are given a sentence from a clinical note. Identify the symptom that the patient reports.", "The patient complains of a persistent dry cough that gets worse at night."),
 ("In this task, you are given a sentence from a research paper. Extract the name of the protein mentioned.", "Inhibition of p53 expression led to increased proliferation in the treated cells."),
 ("Given a sentence about a medication, identify the dosage mentioned in it.", "She was started on metformin 500 mg twice daily with meals."),
 ("In this task, you will be given a sentence. Identify the organisation that is mentioned. If more than one, list them all.", "Volunteers from the Red Cross and Oxfam arrived in the flooded district on Tuesday."),
 ("You are given a short text. Your job is to output the date that is mentioned in it.", "The new bridge is scheduled to open to traffic on 14 October."),
 ("In this task, you are given a sentence in which a person reports a side effect. Identify the side effect.", "Two days after the vaccine I had a sore arm and a mild fever."),
 ("In this task you are given a sentence. Identify the main verb of the sentence.", "The old fisherman slowly repaired his torn net by the harbour."),
 ("Given a sentence, find the adjective that describes the weather.", "We walked home through the freezing streets after the concert."),
 ("In this task, you're given a text about a sports match. Extract the final score.", "After a tense second half, Rovers held on to beat City 3-2 in front of a sold-out crowd."),
 ("You are given a product title. Identify the brand name in it.", "Kelvion Pro 2 Wireless Over-Ear Headphones, Black"),
 ("In this task, you are given a sentence from a medical case report. Identify the name of the disease mentioned.", "A 54-year-old man with a history of hypertension presented with acute pancreatitis."),
 ("In this task, you are given a sentence. Determine which of the listed people is the subject of the sentence.", "According to her colleagues, Dr. Ramos rewrote the grant proposal overnight."),
 ("In this task, you are given a passage and a question. Answer with a phrase from the passage.", "Passage: The orchestra was founded in 1921 by a group of local teachers and first performed in the town hall.\nQuestion: Who founded the orchestra?"),
 ("Given a review, classify whether it mentions the delivery of the product. Answer 'yes' or 'no'.", "Arrived two days early and well packed, and the lamp itself is lovely."),
 ("In this task, you are given a question. Classify it as asking about a person, a place, a date or a number.", "When did the first person walk on the moon?"),
 ("You are given a tweet. Determine whether the tweet is about a natural disaster. Answer 'yes' or 'no'.", "Roads closed near the river as water levels keep rising, stay safe everyone"),
 ("In this task, you are given a sentence from a financial news article. Identify the company names in it.", "Shares of Halden Motors rose 4% after the carmaker agreed a battery deal with Ostra Energy."),
 ("In this task, you are given a statement made by a patient. Your task is to identify the drug name, if any.", "I stopped taking ibuprofen because it was upsetting my stomach."),
 ("Given an e-mail, classify it as 'urgent' or 'not urgent'.", "Server room temperature alarm has gone off twice in the last hour, please check immediately."),
 ("In this task, you are given a sentence. Output every number that appears in it, in order.", "The team of 12 walked 38 kilometres in 2 days carrying 15 kilos each."),
 ("In this task, you are given a recipe step. Identify the cooking utensil mentioned in it.", "Whisk the eggs and sugar in a large bowl until pale."),
]:
    add(ex, S(sys, inp))
