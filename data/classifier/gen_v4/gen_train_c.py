from gen_train_a import U, S, M, add, many
sm = "summarization"
T = [
 "The regional hospital announced on Monday that it will open a new children's wing in 2026, adding 60 beds and a dedicated emergency unit for young patients. The expansion is funded by a private donation of 25 million dollars and a matching grant from the province. Staff shortages remain a concern: the hospital is already recruiting nurses abroad, and unions warn that the new beds could sit empty without more hires.",
 "After three years of decline, bookshop sales in the country rose by 8 percent last year, according to the national booksellers' association. Young adult fiction and graphic novels drove most of the growth, helped by recommendations on short-video platforms. Independent shops did better than chains, which the association credits to events such as author readings and book clubs. Online sales, however, still account for more than half of all books sold.",
 "Dear residents, the water supply on Elm Street and Birch Lane will be interrupted on Wednesday from 8 a.m. to 2 p.m. while the crew replaces an old main. Please store enough water for the morning. Parking will be restricted on both streets during the works. We apologise for the inconvenience and thank you for your patience. - Town Utilities",
 "Person A: Did you finish the slides for tomorrow?\nPerson B: Almost, I still need the sales figures from Karim.\nPerson A: He's off today, but I think the numbers are in the shared drive.\nPerson B: Found them. I'll add the chart tonight and send you the deck by 9.\nPerson A: Perfect, I'll review it first thing in the morning.",
 "The study followed 1,200 secondary school students over two years and found that those who used a paper planner reported less stress around exams than those using only phone reminders. However, grades were almost identical between the groups. The authors suggest that the act of writing tasks down may help students feel more in control, but note that students who chose paper planners may already have been more organised.",
 "This jacket is warm and completely waterproof; I wore it through a week of rain in Iceland and stayed dry. The hood is well designed and stays on in wind. On the downside, the sleeves are a little short for me, the zip pockets are too small for a phone, and the colour faded after a few washes. Overall good value, but check the sizing.",
 "The startup Greenloop raised 40 million euros in a funding round led by two climate-focused investors. The company turns food waste from supermarkets into animal feed and plans to open four new plants in Spain and Italy. Its founder said the money will also fund research into producing fertiliser. Critics point out that the process uses a lot of energy, which the company says it will source from solar panels on its sites.",
 "Minutes of the parents' association, 5 March. The spring fair will be held on 18 May; volunteers are needed for the cake stall and games. Funds raised last year (2,350 pounds) paid for new library books. A proposal to install a bike shelter was approved, subject to the head teacher's agreement. Next meeting: 2 April.",
]
INSTR_BEFORE = [
 "Summarize the following article in two sentences.",
 "Write a brief summary of this text.",
 "Give me the main points of the following passage.",
 "What's the key message of this?",
 "Condense the text below into a single tweet-length sentence.",
 "Please provide an executive summary of the following:",
 "Boil this down to three bullet points:",
 "Read the following and write a short abstract of it.",
]
INSTR_AFTER = [
 "Can you summarize that for me?",
 "Sum this up in one line.",
 "What are the takeaways here, briefly?",
 "Give me a short version of this for our newsletter.",
 "Briefly, what happened?",
 "Write a one-sentence summary.",
 "In a few words, what is this about?",
 "Shorten this to about 30 words.",
]
for i, t in enumerate(T):
    add(sm, U(INSTR_BEFORE[i] + "\n\n" + t))
    add(sm, U(t + "\n\n" + INSTR_AFTER[(i + 3) % 8]))
NI_SUM = [
 "In this task, you are given a news article. Your task is to generate a headline for it that captures the main event.",
 "Given a conversation, write a short summary of what the speakers agreed on.",
 "In this task, you are given a product review. Write a summary of the review in one sentence.",
 "You are given a passage. Generate a title for the passage that summarizes its main topic.",
 "Given an email, write a subject line that summarizes its content in under ten words.",
 "In this task, you are given an abstract of a study. Write a plain-language summary suitable for a newspaper.",
 "Read the text and write a TL;DR of at most 20 words.",
 "Given a paragraph, produce a one-line summary that someone could read in five seconds.",
]
for i, d in enumerate(NI_SUM):
    add(sm, S(d, T[(i * 3 + 1) % 8]))
    add(sm, U("Definition: " + d + "\nInput: " + T[(i * 5 + 2) % 8] + "\nOutput:"))
many(sm, [
 "Summarize the plot of Romeo and Juliet in five sentences.",
 "Give a short synopsis of the film Jurassic Park.",
 "Briefly summarize the main ideas of Adam Smith's The Wealth of Nations.",
 "What is the storyline of Moby-Dick, in a nutshell?",
 "Summarize the history of the Berlin Wall in one paragraph.",
 "Recap the plot of Agatha Christie's 'And Then There Were None'.",
 "Summarize the key points of the theory of relativity for a general audience in under 100 words.",
 "Give me a brief summary of what the Paris Agreement on climate change says.",
])
add(sm, M("Can you summarize this?\n\n" + T[1], "Bookshop sales rose 8% last year after three years of decline, driven by young adult fiction and graphic novels; independents outperformed chains, though online still makes up over half of sales.", "Great. Now just give me one sentence."))
add(sm, M("Summarize this review:\n\n" + T[5], "A warm, fully waterproof jacket with a good hood, let down by short sleeves, small pockets and colour that fades.", "Shorter, please, like a star-rating caption."))
add(sm, M(T[6], "That's an interesting announcement. What would you like me to do with it?", "Give me the gist in two lines."))
