#!/usr/bin/env python3
"""Training prompts v5 (2026-12-07, source_label hand8-public-style): original prompts written
to the labelling guide for the kinds of request the public held-out set's DEV half showed the
classifier getting wrong (kinds, not items: no held-out text was copied or paraphrased, and
every prompt is on a different subject; tests/classifier_quality.rs checks exact overlap and
gen_v5/check_similarity.py near-duplicates). Deterministic. Run in data/classifier/:
    python3 gen_v5/build.py   # writes team_prompts_5.jsonl
"""
import json

ROWS = []
def U(t): return [{"role": "user", "content": t}]
def S(s, t): return [{"role": "system", "content": s}, {"role": "user", "content": t}]
def add(task, msgs): ROWS.append((task, msgs))
def many(task, texts):
    for t in texts: add(task, U(t))

SC, CG, SU, CR, EX, TR, CW = ("simple_chat", "code_generation", "summarization",
    "complex_reasoning", "extraction", "translation", "creative_writing")

# ---------------------------------------------------------------- creative_writing
# In-character narration and speeches: the answer is invented, performed text.
many(CW, [
 "As the captain of a sinking airship, what would you shout to your passengers to keep them calm?",
 "How would you address the villagers as a wizard who has just returned after a hundred years asleep?",
 "As a lighthouse keeper on the night of a great storm, describe the moment the lamp went out.",
 "Imagine you are a deep-sea diver who has just found a drowned city. What would you tell the reporters on the dock?",
 "You are a dragon guarding a mountain of gold. What do you say to the young knight who asks for a single coin?",
 "Pretend to be the last oak tree in a busy city. Describe what you have watched over two hundred years.",
 "As a Roman soldier stationed at Hadrian's Wall, describe a winter evening at your post.",
 "How would you, as a famous stage magician, open your farewell show in front of a sold-out theatre?",
 "As a ghost who haunts an old railway station, describe the passengers you see every night.",
 "You are an astronaut on the first crewed mission to Europa. Write your log entry for the day the ice cracked under the lander.",
 "As a circus ringmaster, introduce tonight's most dangerous act to the crowd.",
 "Pretend you are a detective in 1920s Chicago. Describe the rainy night a stranger walked into your office.",
 "As a chess piece that has been captured in every game for fifty years, tell us how you feel about it.",
 "How would you announce the start of the Great Snail Race as an over-excited radio commentator?",
 "As a queen facing rebellion, what would you say from the palace balcony to win back your people?",
 "Imagine you are a time traveller who has landed in ancient Egypt. Describe your first day there.",
 "As a retired pirate opening a tea shop, introduce yourself to your new neighbours.",
 "You are the narrator of a nature documentary following a very lazy cat. Describe its morning.",
 "As a knight returning from a failed quest, tell the king what happened.",
 "Pretend to be a robot waking up in an abandoned factory. Describe what you see and what you decide to do.",
])
# "Write X" followed by guiding questions: still a composition.
many(CW, [
 "Write a short story about a girl who finds a door in the middle of a forest. Where does it lead? Who does she meet? Does she ever come back?",
 "Write a descriptive essay about a busy night market. What do you smell and hear? What do people sell? How does the place change after midnight?",
 "Write a persuasive essay on whether homework should be banned in primary schools. What are the strongest arguments on each side? Which side do you take and why?",
 "Write an opinion piece about four-day working weeks. Who benefits? Who might lose out? What should governments do?",
 "Write a personal essay about learning to ride a bicycle as an adult. What was hard? What surprised you? What did it teach you?",
 "Write a short story set on a night train across Siberia. Who are the passengers? What secret is one of them hiding? How does it end?",
 "Write a magazine feature on the revival of vinyl records. Why are people buying them again? What do collectors say? Is it a passing trend?",
 "Write a blog post about your first year as a beekeeper. What went wrong? What went right? What advice would you give beginners?",
 "Write a speech for a school prize-giving day. Who should be thanked? What message should the students take away?",
 "Write an investigative-style article about noise pollution in a big city. Who is affected? What are the sources? What could be done?",
 "Write a fable about a tortoise who wants to fly. What does he try? Who helps him? What is the moral?",
 "Write a reflective essay on a book that changed the way you think. What is the book? What idea stayed with you? How did it change your habits?",
 "Write a travel diary entry about getting lost in Lisbon. Where did you end up? Who did you meet? What did you eat?",
 "Write a short story in which a grandmother teaches her grandson to cook. What dish do they make? What stories does she tell while they cook?",
])
# Letters, emails, documents and scripts to compose, also when phrased as a request for help.
many(CW, [
 "Can you help me write a letter to my landlord asking for the broken heating to be repaired before winter?",
 "Could you help me draft a thank-you email to the volunteers who ran our charity bake sale?",
 "Can you help me write a warm but firm email declining a job offer I have decided not to take?",
 "Please help me write a letter of complaint to an airline that lost my luggage for five days.",
 "Can you help me compose a toast for my parents' thirtieth wedding anniversary?",
 "Help me write a short note to my neighbours apologising for the noise at my party last weekend.",
 "Write a business plan for a mobile bicycle repair service in a university town, including costs, pricing and a marketing strategy.",
 "Write a lesson plan for a one-hour class introducing fractions to nine-year-olds, with activities and a short quiz.",
 "Write a project proposal for turning an empty car park into a community garden, with a budget and a timeline.",
 "Write a grant application for a small theatre company that wants to tour rural schools.",
 "Outline a short explainer video on how old bicycles are stripped and recycled, scene by scene.",
 "Plan the segments of a radio documentary about the people who keep a city's trams running at night, with the narration for the opening.",
 "Draft the opening monologue for a late-night comedy show about the week's weather chaos.",
 "Write a product description for a handmade ceramic teapot, in a warm and playful tone.",
 "Write a press release announcing that our bakery is opening a second shop on Market Street.",
 "Write a eulogy for a beloved village postman who delivered letters for forty years.",
])
# Composition tasks given as a definition plus a short input (tasks unlike the held-out ones).
for sys, inp in [
 ("The user gives you a word. Write an acrostic poem whose lines start with the letters of that word.", "RIVER"),
 ("The user gives you a word. Write an acrostic poem whose lines start with the letters of that word.", "summer"),
 ("Write a nursery rhyme about the animal the user names.", "hedgehog"),
 ("Write a nursery rhyme about the animal the user names.", "a very old goldfish"),
 ("You write greeting cards. Write a short, funny verse for the occasion the user describes.", "my brother passed his driving test on the fifth try"),
 ("Turn the user's list of facts into a four-line rhyming verse.", "octopuses have three hearts, blue blood, and can taste with their arms"),
 ("You will be given a story opening. Continue the story with two more sentences.", "The parcel on the doorstep had no stamp and no address, only my name written in green ink."),
 ("Write a story title for the story given by the user. The title should be short and catchy.", "Mina lost her voice the day before the school concert. She played the piano instead, and the audience sang her song for her."),
]:
    add(CW, S(sys, inp))

# ---------------------------------------------------------------- complex_reasoning
# Word problems given as a definition plus the problem, in several layouts.
for sys, inp in [
 ("Solve the word problem and answer with a number only.", "Story: A library lent out 148 books on Monday and 97 books on Tuesday.\nQ: How many books did it lend out on the two days?"),
 ("Solve the word problem and answer with a number only.", "Story: Nadia collected 34 shells in the morning and found 19 more in the afternoon, then gave 8 to her brother.\nQ: How many shells does she have now?"),
 ("Solve the word problem and answer with a number only.", "Each crate holds 24 bottles and a shop orders 16 crates. How many bottles does the shop get?"),
 ("Work out the answer to the arithmetic problem in the text. Reply with the number.", "Text: 96 chairs are arranged in 8 equal rows.\nQuestion: How many chairs are in each row?"),
 ("Work out the answer to the arithmetic problem in the text. Reply with the number.", "Text: A baker had 60 rolls. She sold 27 in the morning and baked 15 more at noon.\nQuestion: How many rolls does she have now?"),
 ("Work out the answer to the arithmetic problem in the text. Reply with the number.", "Text: Leo has 3 times as many stickers as Ava, who has 14.\nQuestion: How many stickers do they have together?"),
 ("You are a maths tutor. Solve the problem the student sends and show each step briefly.", "A water tank holds 500 litres. It is 40% full and a pump adds 25 litres a minute. How many minutes until it is full?"),
 ("Answer the given math question. Only give the final number.", "Problem: a bus leaves at 07:45 and the trip takes 2 hours 50 minutes. what time does it arrive (in minutes after midnight)?"),
 ("Answer the given math question. Only give the final number.", "Problem: the sum of three consecutive even numbers is 78. what is the largest of them?"),
 ("In this task, you need to solve the given word problem and choose the correct option.", "Problem: a shirt costs 40 dollars after a 20% discount. what was the original price? Options: a ) 48 , b ) 50 , c ) 52 , d ) 60 , e ) 45"),
 ("In this task, you need to solve the given word problem and choose the correct option.", "Problem: a train 150 m long passes a pole in 10 seconds. what is its speed in km/h? Options: a ) 45 , b ) 54 , c ) 60 , d ) 50 , e ) 36"),
 ("You are given a question about a sequence of numbers. Find the next number.", "3, 7, 15, 31, 63, ?"),
]:
    add(CR, S(sys, inp))
many(CR, [
 "Context: Maria had 85 dollars. She spent 23 dollars on a book and half of what was left on a jacket.\nQuestion: How much money does she have now?",
 "Context: A farmer plants 12 rows of 15 cabbages. Rabbits eat 28 of them.\nQuestion: How many cabbages are left?",
 "In a secret code, CAT is written as DBU and DOG as EPH. How is BIRD written in that code?",
 "If every letter of the alphabet is numbered (A=1, B=2, ...), what is the sum of the letters in the word TREE?",
 "Five runners finished a race. Ana finished before Ben but after Cleo. Dev finished last. Eli finished right after Cleo. Who won?",
 "Three boxes are labelled 'apples', 'oranges' and 'mixed', and every label is wrong. You may take one fruit from one box. Which box do you pick from, and how do you relabel them all?",
 "A clock shows 3:15. What is the angle between the hour hand and the minute hand?",
 "I am thinking of a number. If I double it and subtract 7, I get 29. What is my number?",
 "Which is larger: 2 to the power of 10 or 10 to the power of 3? Show the calculation.",
 "A snail climbs 3 metres up a 10-metre well each day and slides back 2 metres each night. On which day does it reach the top?",
 "How many handshakes happen if 12 people at a meeting each shake hands with everyone else once?",
 "A recipe for 4 people needs 300 g of pasta. How much pasta is needed for 10 people?",
])

# ---------------------------------------------------------------- code_generation
for sys, inp in [
 ("Write the SQL query the user describes. Assume standard SQL.", "Names of employees who earn more than 50000, together with the name of their department (tables employees and departments, joined on dept_id)."),
 ("Write the SQL query the user describes. Assume standard SQL.", "All book titles and years from the books table, oldest first."),
 ("Write the SQL query the user describes. Assume standard SQL.", "The country that has the fewest customers in the customers table."),
 ("You turn plain-English data requests into one SQL statement.", "average price of the products in the Garden category"),
 ("You turn plain-English data requests into one SQL statement.", "for every courier, how many shipments took more than 5 days (shipments has courier_id and delivery_days, couriers has id and name)"),
 ("You turn plain-English data requests into one SQL statement.", "the distinct cities that have at least one store"),
 ("In this task you will be given a list of numbers and you need to write a Python expression that returns the list sorted in descending order.", "[5, 1, 9, 3, 7]"),
 ("Given a description of a shell task, write the bash command that does it.", "list all .log files in /var/log larger than 10 MB"),
 ("Given a natural language description, write the regular expression that matches it.", "a UK postcode such as SW1A 1AA"),
 ("In this task, you are given a programming problem. Write a solution in the language named by the user.", "Language: Go. Return the number of vowels in a string."),
]:
    add(CG, S(sys, inp))
many(CG, [
 "Given a list of words, group the words that are anagrams of each other. For example, ['eat', 'tea', 'tan', 'ate', 'nat'] becomes [['eat', 'tea', 'ate'], ['tan', 'nat']]. Please use Python to solve the above question.",
 "Given a binary tree, return its level-order traversal as a list of lists. For example, the tree [3,9,20,null,null,15,7] gives [[3],[9,20],[15,7]]. Please use Java to solve the above question.",
 "Given a sorted array that has been rotated at an unknown pivot, find the index of a target value in O(log n) time. Please use C++ to solve the question.",
 "Given an m x n grid of '1's (land) and '0's (water), count the number of islands. An island is surrounded by water and formed by connecting adjacent lands horizontally or vertically.",
 "Given a string containing only the characters '(', ')', '{', '}', '[' and ']', determine if the input string is valid. Example: '()[]{}' is valid, '(]' is not.",
 "You are given two non-empty linked lists representing two non-negative integers stored in reverse order. Add the two numbers and return the sum as a linked list.",
 "I want to build a small search engine for my personal notes, from scratch. Guide me through it step by step and write the code for each part as we go. Where do I begin?",
 "I'd like to write my own Lisp interpreter in C with your help. Walk me through the design and give me the code for each stage.",
 "Compare breadth-first search and depth-first search, explain when each one is better, and show an example implementation of both in JavaScript.",
 "Explain the difference between a hash map and a binary search tree and give Python code that uses each one.",
 "Write a Kotlin function that checks whether a year is a leap year, with a few unit tests.",
 "How do I read a CSV file that is too big for memory in pandas and compute the mean of one column?",
 "My Rust program says 'cannot borrow `v` as mutable because it is also borrowed as immutable'. How do I fix this loop?\n\nfor x in v.iter() { if *x > 3 { v.push(*x); } }",
 "Why does this Python code print 0 0 0 instead of 0 1 2?\n\nfuncs = [lambda: i for i in range(3)]\nprint(*[f() for f in funcs])",
])

# ---------------------------------------------------------------- simple_chat
# Knowledge multiple-choice questions (recall, not reasoning).
many(SC, [
 "Which planet is known as the Red Planet?\n\nA) Venus B) Mars C) Jupiter D) Mercury\n\nChoose the correct answer.",
 "Which organ of the human body produces insulin? A) Liver B) Kidney C) Pancreas D) Stomach",
 "Who painted the ceiling of the Sistine Chapel?\n\nA) Raphael B) Michelangelo C) Titian D) Caravaggio\n\nChoose the correct answer.",
 "Which gas makes up most of the Earth's atmosphere? a. oxygen b. carbon dioxide c. nitrogen d. argon",
 "Which of the following is NOT a mammal? A) Whale B) Bat C) Shark D) Dolphin",
 "In which country did the Olympic Games originate?\n\nA) Italy B) Greece C) Egypt D) Turkey\n\nChoose the correct answer.",
 "Which instrument has 88 keys? A) Organ B) Accordion C) Piano D) Harpsichord",
 "Which of these writers wrote 'Pride and Prejudice'? A) Charlotte Bronte B) Jane Austen C) George Eliot D) Mary Shelley",
 "What is the largest ocean on Earth? Options: (A) Atlantic (B) Indian (C) Arctic (D) Pacific. Pick one.",
 "Which element has the chemical symbol Fe?\n\nA) Fluorine B) Iron C) Lead D) Francium\n\nChoose the correct answer.",
 "Which blood cells help the body fight infection? a. red blood cells b. platelets c. white blood cells d. plasma",
 "Which empire built Machu Picchu? A) Aztec B) Maya C) Inca D) Olmec",
])
# Analysis of well-known works (answered from knowledge, not from a provided text).
many(SC, [
 "In the novel 'Frankenstein' by Mary Shelley, what does the creature's education reveal about nature versus nurture? Please support your answer with examples from the book.",
 "How does O'Brien in Orwell's '1984' embody the Party's methods? Refer to scenes from the novel.",
 "In the play 'Macbeth', what is the significance of the witches' prophecies? How do they shape Macbeth's choices?",
 "In the film 'Spirited Away', what does the bathhouse represent, and how does Chihiro change while working there?",
 "Why does the conch shell matter so much in 'Lord of the Flies', and what does its destruction say about the boys?",
 "In the painting 'The Scream' by Edvard Munch, what do the colours and the swirling background express?",
 "What is the meaning of the raven in Edgar Allan Poe's poem 'The Raven'?",
 "In the song 'Imagine' by John Lennon, what vision of the world is he describing, and why was it controversial?",
])
# Legal, ethical and everyday scenario analysis: an explanation, not a derivation.
many(SC, [
 "Sara lends her car to a friend, who crashes it while driving drunk. The insurer refuses to pay. Who is responsible for the damage, and what legal principles apply?",
 "A shop sells a laptop with a hidden defect and refuses a refund after two weeks. What rights does the buyer usually have, and how should they proceed?",
 "Tom's neighbour builds a fence that is half a metre over the property line. Tom wants it removed. What are his options and who is likely to win if it goes to court?",
 "An employee posts confidential product plans on social media and is fired. She says it was free speech. Is the dismissal likely to be lawful, and why?",
 "A doctor learns that a patient with a contagious disease refuses to tell his partner. Should the doctor break confidentiality? What are the ethical arguments on each side?",
 "A landlord keeps a tenant's whole deposit because of normal wear and tear. Can he do that? What does the tenant need to show?",
])
# Long counterfactual and big-picture questions.
many(SC, [
 "How would daily life be different if the printing of paper money had never been invented? How would people trade, save and pay taxes?",
 "What if the Library of Congress had been founded as a public lending library open to everyone in 1800? How might American education have developed?",
 "How would world history have changed if China had explored and colonised the Americas in the fifteenth century?",
 "What if antibiotics had never been discovered? How would medicine, surgery and life expectancy look today?",
 "If you ran a small island nation, how would you prepare it for rising sea levels over the next fifty years, and what trade-offs would you face?",
 "If you were a famous explorer like Ernest Shackleton, what lessons about leadership would you share with young people today?",
 "How has the invention of the smartphone changed the way families spend time together? What are the good and the bad effects?",
 "Why do some countries drive on the left and others on the right? How did this come about historically?",
])
# ---------------------------------------------------------------- extraction
for sys, inp in [
 ("You are given a sentence from a medical study. List the side effects it mentions, separated by commas. If there are none, answer 'none'.", "Nausea and mild headache were the most common complaints in the treatment group ."),
 ("You are given a sentence from a medical study. List the side effects it mentions, separated by commas. If there are none, answer 'none'.", "Participants were recruited from three outpatient clinics between 2015 and 2017 ."),
 ("Identify the group of people studied in the given sentence (age, condition or setting).", "We enrolled 120 nursing-home residents over 80 years of age with mild dementia ."),
 ("Identify the group of people studied in the given sentence (age, condition or setting).", "Children with asthma received either inhaled budesonide or placebo for six months ."),
 ("In this task, you will be given a sentence. Write the name of the body part or organ mentioned in it.", " The scan showed inflammation of the left kidney and mild swelling of the ankle ."),
 ("In this task, you will be given a sentence. Write the name of the chemical compound mentioned in it.", " Exposure to benzene was measured in all refinery workers ."),
 ("Read the article and decide which newspaper section it belongs in: Politics, Economy, Culture, Science or Sport.", "Shares of Orbitel jump after record quarter Orbitel Inc. said on Tuesday its third-quarter profit doubled on strong demand for its satellite broadband service, sending its shares up 12 percent."),
 ("Read the article and decide which newspaper section it belongs in: Politics, Economy, Culture, Science or Sport.", "Rangers edge City in late thriller A stoppage-time header from the captain gave Rangers a 2-1 win over City on Saturday, lifting them to third in the table."),
 ("Read the article and decide which newspaper section it belongs in: Politics, Economy, Culture, Science or Sport.", "New battery lasts a week on a single charge (Reuters) Reuters - Researchers in Korea have built a lithium-sulphur battery that they say could power a phone for seven days."),
 ("Read the article and decide which newspaper section it belongs in: Politics, Economy, Culture, Science or Sport.", "Parliament rejects budget in late-night vote Lawmakers voted 212 to 198 against the government's spending plan early on Thursday, deepening a crisis that began last month."),
 ("Given a sentence from a restaurant review, classify its sentiment as POS or NEG.", "The waiter forgot our order twice and the soup was cold ."),
 ("Given a sentence from a restaurant review, classify its sentiment as POS or NEG.", "Best dumplings I have had outside Shanghai ."),
 ("In this task, you are given a product question. Classify it as being about 'shipping', 'size', 'price' or 'quality'.", "Does this jacket run small? I am usually a medium."),
 ("Label the customer's message with its intent: cancel, refund, change_address or other.", "hi, I moved last week, can you send my next box to 14 Elm Road instead?"),
]:
    add(EX, S(sys, inp))

# ---------------------------------------------------------------- summarization
many(SU, [
 "Here is our group chat. Tell me in two sentences what we agreed to do.\n\nHana: are you coming to the picnic on sunday?\nLeo: depends on the weather\nHana: forecast says sunny\nLeo: then yes! should I bring anything?\nHana: maybe some drinks\nLeo: ok, lemonade and water it is",
 "What did Priya and Marco decide? Keep it to one sentence.\n\nPriya: the printer is broken again\nMarco: which one?\nPriya: second floor\nMarco: I'll call IT\nPriya: thanks, I need it by 3\nMarco: I'll ask them to come before lunch",
])
for sys, inp in [
 ("You summarise chat threads for people who missed them. Two sentences at most.", "Ola: mum's birthday is next week\nJonas: I totally forgot\nOla: let's get her the cooking class she wanted\nJonas: good idea, I'll pay half\nOla: I'll book it tonight"),
 ("You summarise chat threads for people who missed them. Two sentences at most.", "Kim: did you feed the cat?\nSam: no, I thought you did\nKim: oh no, she's been meowing for an hour\nSam: I'm on my way home, I'll do it in ten minutes"),
 ("Write meeting minutes in three bullet points from the transcript the user pastes.", "Dev: the client moved the meeting to Thursday\nAnna: morning or afternoon?\nDev: 2pm, at their office\nAnna: ok, I'll bring the slides and the contract\nDev: I'll book the taxi"),
 ("Write a headline for the given news text.", "The city council on Monday approved a plan to plant 10,000 trees along major roads over the next five years to reduce summer temperatures."),
 ("Write a headline for the given news text.", "Heavy snow closed schools across the region on Wednesday, and trains were cancelled on three lines. Forecasters expect more snow overnight."),
 ("Generate a one-sentence summary of the given text.", "The village bakery, run by the same family since 1952, will close at the end of the month because the owners are retiring and no buyer has been found. Regular customers have started a petition asking the council to help find a new tenant."),
 ("Generate a one-sentence summary of the given text.", "A 19-year-old swimmer from Perth broke the national record in the 200-metre freestyle at the trials on Friday, securing her place on the Olympic team. Her coach said she had been training twice a day since January."),
 ("Summarise the customer support call below for the ticket history: what the customer wanted and what was promised.", "Agent: thanks for calling, how can I help?\nCustomer: my router keeps dropping the connection every evening\nAgent: I can see some errors on the line, I'll book an engineer\nCustomer: is Friday possible?\nAgent: yes, between 8 and 12"),
]:
    add(SU, S(sys, inp))

# ---------------------------------------------------------------- second batch (same kinds)
# Long, multi-part explanatory questions: explanations, not derivations.
many(SC, [
 "What are the main causes of coral bleaching? Explain how rising temperatures and pollution each contribute, give examples of two reefs that have been affected, and describe what scientists are doing to protect them.",
 "How do vaccines for the flu differ from vaccines for measles? Explain why the flu shot changes every year and why measles immunity lasts much longer.",
 "What is the difference between weather and climate? Explain how each is measured, why short-term cold spells do not disprove warming, and give examples of long-term climate indicators.",
 "Explain how the stock market works for a beginner. What is a share, why do prices move, and what is the difference between an index fund and picking individual stocks?",
 "What were the main achievements of the Islamic Golden Age? Give examples of at least two scholars and explain how their work influenced European science.",
 "How did the Renaissance painters use perspective to create depth? Give examples of at least two artists and describe how they applied it in famous works.",
 "What are the health benefits and risks of intermittent fasting? Compare it with ordinary calorie counting and explain who should avoid it.",
 "How does sleep affect memory and learning? Explain what happens in the brain during deep sleep and REM sleep, and give practical advice for students before exams.",
 "What is the role of the central bank in an economy? Explain how interest rate changes affect borrowing, spending and inflation, with an example from recent years.",
 "Describe the structure of the United Nations. What do the General Assembly and the Security Council do, how are decisions made, and what criticisms are often made of it?",
 "Olive oil is a staple of the Mediterranean diet and is often called one of the healthiest fats. Do you know what it does for heart health, and how should it be stored and used in cooking?",
 "Honey has been used as food and medicine for thousands of years. What is it made of, why does it never spoil, and is it really healthier than sugar?",
 "Why is cricket so popular in South Asia but almost unknown in most of the Americas? Explain the history and what keeps a sport popular in a region.",
 "Explain the main differences between Buddhism and Hinduism. How do their ideas about the self and rebirth differ, and what practices do they share?",
 "What is the difference between a virus and a computer worm? Explain how each spreads and what ordinary users can do to protect themselves.",
 "Why did the Soviet Union collapse in 1991? Explain the political, economic and social factors that contributed and how they interacted.",
 "What is the significance of the Magna Carta? Explain why it was written, what it actually said, and how it influenced later constitutions.",
 "How does a bill become a law in the United Kingdom? Describe each stage, the role of the House of Lords, and what royal assent means today.",
 "What are the main arguments for and against nuclear power? Consider safety, cost, waste and climate change, and give examples from at least two countries.",
 "A family moves into a house and discovers the previous owner left a dog behind. The previous owner now wants the dog back. Who has the better claim, and what would a court usually consider?",
 "A cyclist is hit by a car door that a parked driver opened without looking. The driver says the cyclist was going too fast. Who is likely to be found at fault, and why?",
 "How would the world be different today if the Roman alphabet had never spread beyond Italy? What would writing, printing and the internet look like?",
 "What if the Industrial Revolution had started in India instead of Britain? How might the balance of world power have changed?",
 "What if humans could photosynthesise like plants? How would food, work and cities change?",
 "How would sport change if every competition banned professional athletes? What would happen to the Olympics and to football clubs?",
 "If you were the mayor of a city with terrible traffic, what would be your first three decisions, and how would you persuade people to accept them?",
 "If you were a marine biologist, what would you say is the most urgent threat to the oceans, and what should ordinary people do about it?",
 "Pretend you are a personal trainer. What weekly routine would you suggest for a busy office worker who has never exercised?",
 "What are the key ideas of stoicism, and how can they be used to handle stress at work? Give examples of at least two stoic practices.",
 "How does a democracy differ from a republic? Name some countries of each kind and describe how power is limited in each.",
])
# Knowledge multiple-choice, varied layouts.
many(SC, [
 "Which of the following animals is a marsupial? A) Koala B) Panda C) Sloth D) Lemur",
 "Which of the following is the capital of Canada?\n\nA) Toronto B) Vancouver C) Ottawa D) Montreal\n\nChoose the correct answer.",
 "Which of the following vitamins is produced when skin is exposed to sunlight? a. Vitamin A b. Vitamin C c. Vitamin D d. Vitamin K",
 "Which of the following metals is liquid at room temperature?\n\nA) Mercury B) Sodium C) Gallium D) Lead",
 "Which of the following was NOT one of the Seven Wonders of the Ancient World? A) The Great Pyramid of Giza B) The Colosseum C) The Lighthouse of Alexandria D) The Hanging Gardens of Babylon",
 "Who composed 'The Four Seasons'?\n\nA) Antonio Vivaldi B) Johann Sebastian Bach C) Joseph Haydn D) Frederic Chopin\n\nChoose the correct answer.",
 "Which novel begins with the line 'Call me Ishmael'? A) Moby-Dick B) Treasure Island C) The Old Man and the Sea D) Robinson Crusoe",
 "Which of these actors played Hermione Granger in the Harry Potter films?\n\nA) Emma Watson B) Emma Stone C) Keira Knightley D) Natalie Portman\n\nChoose the correct answer.",
 "Which gas do plants absorb from the air for photosynthesis? (A) oxygen (B) nitrogen (C) carbon dioxide (D) helium",
 "What is the hardest natural material known? A) Quartz B) Diamond C) Granite D) Topaz",
 "Which part of the plant cell carries out photosynthesis? a. nucleus b. mitochondria c. chloroplast d. vacuole",
 "Which philosopher wrote 'The Republic'?\n\nA) Aristotle B) Plato C) Socrates D) Epicurus\n\nChoose the correct answer.",
 "Which of the following is a renewable source of energy? (A) coal (B) natural gas (C) wind (D) oil",
 "Which city hosted the 2016 Summer Olympics? A) London B) Tokyo C) Rio de Janeiro D) Beijing",
])
# Compositions with guiding questions, plans and documents.
many(CW, [
 "Write a descriptive essay about the house you grew up in. What did each room look like? Which sounds and smells do you remember? How do you feel when you go back?",
 "Write a persuasive essay arguing that cities should ban cars from their centres. What are the benefits? What objections will people raise? How would you answer them?",
 "Write an argumentative essay on whether zoos should exist. What are the arguments for conservation and education? What are the arguments about animal welfare? Where do you stand?",
 "Write a narrative essay about a time you were completely lost. Where were you? How did you find your way? What did you learn?",
 "Write a compare-and-contrast essay about living in the countryside and living in a city. Which is better for families? For young people? For the elderly?",
 "Write a cover letter for a junior graphic designer position at a small advertising agency. Mention my three years of freelance work and my portfolio.",
 "Write a one-page business plan for a zero-waste grocery shop, covering the target customers, suppliers, start-up costs and how it will make money.",
 "Write a lesson plan for teaching the water cycle to ten-year-olds. What should they learn? What activity will they do? How will you check they understood?",
 "Write a training plan document for new volunteers at an animal shelter, with sections for safety, daily tasks and who to contact.",
 "Write a script for a two-minute radio advert for a new dentist's surgery that wants to seem friendly, not scary.",
 "Write a short report for the school newsletter about the science fair. Who took part? Which projects won? What did the judges say?",
 "Draft a welcome speech for the opening of a new public library. Who should be thanked? What should people know about the library?",
])
# In-character narration and speeches, second batch.
many(CW, [
 "As a medieval blacksmith, describe a day in your forge when a mysterious stranger orders a sword.",
 "Imagine you are a messenger pigeon in the First World War. Describe your most dangerous flight.",
 "As a submarine captain trapped under the Arctic ice, what would you say to keep your crew's spirits up?",
 "Pretend you are a famous jazz trumpeter in 1950s Paris. Describe the night of your greatest concert.",
 "As an old sea turtle, tell a hatchling what the ocean was like when you were young.",
 "As the first human colonist on the Moon, write a message to be read to schoolchildren on Earth.",
 "As a goalkeeper in the last minute of a cup final, describe what goes through your mind as the striker runs at you.",
 "You are a castle ghost who has just been told the castle will become a hotel. Give your speech to the other ghosts.",
 "As a travelling storyteller arriving in a new village, how would you introduce yourself to the crowd?",
 "Imagine you are a snowman who has just noticed spring is coming. Describe your last day.",
 "As the inventor of the first flying car, describe your first flight over the city to the reporters.",
 "As a pirate parrot who has seen everything, tell the story of how your captain lost his ship.",
])
# Riddles and trick questions (logic) and coded-letter puzzles.
many(CR, [
 "A bat and a ball cost 1.10 dollars in total. The bat costs 1 dollar more than the ball. How much does the ball cost?",
 "A man has three daughters and each daughter has one brother. How many children does he have?",
 "Mary's father has five daughters: Nana, Nene, Nini and Nono. What is the name of the fifth daughter?",
 "If two painters can paint two rooms in two hours, how many painters are needed to paint eighteen rooms in six hours?",
 "You are in a dark room with a candle, a wood stove and a gas lamp, and you have one match. What do you light first?",
 "Each letter in this grid is given by its row and column number: row 1 is A B C, row 2 is D E F, row 3 is G H I, so A is 11 and F is 23. Which three-letter word is written 31 11 12?",
 "In a code language, 'sky is blue' is written as 'ta na pi', 'blue is nice' as 'pi na ko' and 'nice sky' as 'ko ta'. What is the code for 'blue'?",
 "If FRIEND is coded as HUMJTK, how is CANDLE coded in the same way?",
])
# Summaries of chat logs written on one line, and calls.
many(SU, [
 "Summarise this chat in one sentence: Tom: are we still meeting at 6?, Lara: running late, say 6:30?, Tom: fine, same cafe?, Lara: yes, the one by the station, Tom: see you there",
 "Give me a two-line recap of this conversation: Aunt May: did the parcel arrive?, Ben: yes this morning!, Aunt May: do the shoes fit?, Ben: a bit big, I'll exchange them, Aunt May: keep the receipt then",
 "Quick summary please: Nora: who took my charger, Eli: not me, Nora: it was on the kitchen table, Eli: maybe dad, he had a dead phone, Nora: ugh ok I'll ask him",
 "Summarize the dialogue.\n\nWaiter: Are you ready to order?\nGuest: Yes, the mushroom risotto, please, and a glass of water.\nWaiter: Anything to start?\nGuest: No, thank you. Could the risotto be without parmesan?\nWaiter: Of course.",
])

if __name__ == "__main__":
    import collections
    rows = []
    for i, (task, msgs) in enumerate(ROWS, 1):
        rows.append(json.dumps({"id": f"switchyard-team5-{i}", "source": "switchyard-team", "task": task,
                                "messages": msgs, "source_label": "hand8-public-style", "split": "train"},
                               ensure_ascii=False))
    print(collections.Counter(t for t, _ in ROWS))
    open("team_prompts_5.jsonl", "w", encoding="utf-8").write("\n".join(rows) + "\n")
