from gen_train_a import U, S, M, add, many
ex = "extraction"
Q1 = "Greenfield Dental, 14 Harbour Road, Portsmouth. Appointment for: Lucy Barnes. Date: Thursday 22 August 2024, 10:40. Dentist: Dr. Rahul Mehta. Treatment: check-up and scale & polish. Fee: 65 GBP, payable on the day. To cancel, call 023 9240 1177 at least 24 hours in advance."
Q2 = "Quarterly results: Northwind Foods reported revenue of 412 million dollars, up 6%, with a profit of 38 million. Its rival Bayside Grocers had revenue of 389 million, down 2%, and a loss of 5 million. Meanwhile, Copper Valley Markets grew revenue 11% to 201 million with a profit of 17 million."
Q3 = "Review 1 (Phone Z): Great camera, battery lasts two days, but the screen scratches easily. 4/5.\nReview 2 (Phone Y): Fast and smooth, terrible battery life, overheats when gaming. 2/5.\nReview 3 (Phone Z): Best phone I've owned, the zoom is amazing. 5/5."
Q4 = "In 1998, engineer Haruto Sato left Osaka for Toronto, where he co-founded the robotics firm Maplewave with Claire Dubois. The company was acquired in 2015 by Veridian Systems of Munich for 300 million dollars."
many(ex, [
 "Extract the patient name, date, time, dentist and fee from this appointment letter and return them as JSON.\n\n" + Q1,
 "Given the following quarterly results, identify the company with the highest profit and the one with the fastest revenue growth.\n\n" + Q2,
 "Analyze these customer reviews and return a JSON object with the average rating for each phone.\n\n" + Q3,
 "Identify the named entities (people, organizations, locations) in this paragraph and group them by type.\n\n" + Q4,
 "From the text below, list every year mentioned and the event linked to it.\n\n" + Q4,
 Q1 + "\n\nWhat phone number should I call to cancel, and how much notice do I need to give?",
 Q2 + "\n\nWhich company made a loss? Answer only from the text.",
 "Please read the reviews and tell me which phone the reviewers complain about most, and what the complaints are. Use only the reviews.\n\n" + Q3,
 "Extract the following information from the passage: the founder names, the city where the company was founded, the acquirer and the price. Format: key: value.\n\n" + Q4,
 "Evaluate each of the following short movie reviews on a scale of 1 to 5 and return the scores as a list.\n1. A gorgeous, moving film with career-best performances.\n2. It was fine, nothing special, a bit long.\n3. A complete mess from start to finish.",
 "Sort these animals into mammals, birds and reptiles: eagle, dolphin, gecko, bat, penguin, tortoise, otter.",
 "Classify each of the following sentences as a question, a command or a statement: 'Close the window.' 'The soup is cold.' 'Are you coming tonight?'",
 "Which of the following words are verbs? run, table, quickly, jump, blue, write, happiness.",
 "Label each email subject as 'spam' or 'not spam': 'Your invoice for March', 'You WON a free iPhone!!!', 'Team lunch on Friday?', 'Cheap meds no prescription'.",
 "Read this product listing and pull out the brand, model, colour, storage size and price.\n\nBrand new Samsung Galaxy S23, phantom black, 256 GB, unlocked, 649 euros, includes charger.",
 "Given the paragraph below, determine the sentiment towards each brand mentioned (positive, negative or neutral).\n\nI switched from Acme to Zentro last year. Zentro's customer service has been brilliant, whereas Acme never answered my emails. Their prices are about the same.",
 "Find all the dates in this text and convert them to ISO format (YYYY-MM-DD): The contract starts on March 3rd, 2025, the first payment is due 1 April 2025 and the review is scheduled for 15/09/2025.",
 "From the recipe below, make a shopping list of the ingredients with quantities.\n\nFor the pancakes you need 200 g flour, 2 eggs, 300 ml milk, a pinch of salt and 1 tbsp butter for the pan. Serve with 100 g blueberries and maple syrup.",
 "What is the main topic of each of these questions: history, geography, science or literature? 1) Who wrote Don Quixote? 2) What is the longest river in Africa? 3) What is the chemical symbol for gold? 4) In which year did the Berlin Wall fall?",
 "Based only on the paragraph, who acquired Maplewave and when?\n\n" + Q4,
])
for sys, inp in [
 ("In this task, you are given a tweet. Classify the tweet's sentiment as positive, negative or neutral.", "just got my exam results back and I passed everything!!! best day ever"),
 ("In this task, you are given a tweet. Classify the tweet's sentiment as positive, negative or neutral.", "train delayed again by 40 minutes, great start to the week"),
 ("You are given a sentence from a biomedical abstract. Identify the disease names mentioned in the sentence.", "Patients with type 2 diabetes and chronic kidney disease showed slower progression when treated with the new inhibitor."),
 ("In this task, you're given a passage and a question. Your task is to find the answer span in the passage.", "Passage: The Danube flows through ten countries, more than any other river in the world, before emptying into the Black Sea.\nQuestion: Where does the Danube end?"),
 ("Given a product review, determine whether the reviewer would recommend the product. Answer 'yes' or 'no'.", "Works as advertised for the first week, then stopped charging. Returned it."),
 ("In this task, you are given a news headline. Classify it into one of the categories: business, sports, world, science/tech.", "Central bank raises rates for the third time this year"),
 ("You are given a sentence. Identify all the person names in it. If there are none, answer 'none'.", "After the match, coach Elena Ruiz praised goalkeeper Tomasz Nowak for his saves."),
 ("In this task, you are given a question and a context paragraph. Answer 'yes' if the context contains the answer and 'no' otherwise.", "Context: The museum opens daily from 10 a.m. to 6 p.m. and is free on Sundays.\nQuestion: Is there a student discount?"),
 ("Given a customer message, identify the product mentioned and the problem reported. Output them as 'product | problem'.", "My new AirFlow 300 fan makes a rattling noise on the highest setting."),
 ("Classify the given sentence as expressing one of the emotions: joy, sadness, anger, fear, love, surprise.", "I can't stop smiling, my sister is coming home after two years abroad!"),
 ("In this task, you are given a short text. Determine whether it contains an adverse drug reaction. Answer 'yes' or 'no'.", "After two weeks on the new tablets she developed severe dizziness and had to stop."),
 ("Read the paragraph and extract the quantities with their units as a list.", "The recipe calls for 2 cups of rice, 750 ml of stock and 15 minutes of simmering at low heat."),
]:
    add(ex, S(sys, inp))
add(ex, M("I'm going to paste an invoice.", "Sure, go ahead.", "Invoice 2024-117, issued 3 June 2024 by Brightline Print Ltd to Okafor & Sons. 500 flyers: 120.00 GBP; delivery: 15.00 GBP; VAT 20%: 27.00 GBP; total 162.00 GBP, due 3 July. Pull out the invoice number, total and due date."))
add(ex, M("Extract the names of all cities in this sentence: 'We flew from Lima to Madrid and then took the train to Seville.'", "Lima, Madrid, Seville.", "Now also give the country of each one."))

tr = "translation"
many(tr, [
 "Please translate the following into Italian: 'Our office will be closed for the holidays from 24 December to 2 January.'",
 "Could you render this sentence in formal Japanese? 'Thank you very much for your help last week.'",
 "What is the Spanish equivalent of 'it's raining cats and dogs'?",
 "How do you say 'I'm vegetarian' in Thai?",
 "Convert this sentence from English to Hindi: 'The library is open until nine tonight.'",
 "Translate this German email into English: 'Sehr geehrte Frau Klein, vielen Dank für Ihre Bewerbung. Wir möchten Sie gerne zu einem Gespräch am Dienstag einladen.'",
 "Can you translate this Japanese sentence into English? '明日は雨が降るそうです。'",
 "Put this into French for me, casual tone: 'Hey, are we still on for dinner on Friday?'",
 "Give me the Russian for 'Nice to meet you, my name is Anna.'",
 "Translate 'Keep out of reach of children' into Spanish, French and German.",
 "I need an accurate Portuguese version of this notice: 'Please keep your ticket until the end of your journey.'",
 "What does 'carpe diem' mean in English?",
 "Translate the following Chinese into English: '我们下周一开会讨论新的预算。'",
 "How would a native speaker say 'I'm running late, start without me' in Dutch?",
 "Translate into Korean: 'The package was delivered to the wrong address.'",
 "Please provide the English translation of this Arabic phrase: 'شكرا جزيلا على مساعدتك'",
 "Render the following Italian proverb in English and explain it briefly: 'Chi va piano va sano e va lontano.'",
 "Translate these UI labels into German: Settings, Log out, Delete account, Are you sure?",
])
for sys, inp in [
 ("In this task, you are given a sentence in English. Your task is to translate it into Tamil.", "The bus to the airport leaves every twenty minutes."),
 ("Translate the given sentence from French to English.", "Il faut que je parte tôt demain matin pour prendre le train."),
 ("In this task, you are given a sentence in Japanese. Translate it into English, preserving names and numbers.", "田中さんは毎朝七時に駅まで歩きます。"),
 ("You are given a sentence in English. Translate it into Filipino.", "Please wash your hands before eating."),
 ("In this task, you need to translate the given Italian sentence into English.", "Domani andiamo al mare se fa bel tempo."),
 ("Given a sentence in Spanish, provide an equivalent paraphrased translation in German that keeps the same meaning.", "El restaurante estaba lleno, así que cenamos en casa."),
 ("In this task, you're given a sentence in Persian. Translate it into English.", "من هر روز صبح قهوه می‌نوشم."),
 ("Translate the following sentence from English into Ukrainian.", "The meeting has been moved to next Tuesday."),
 ("You will be given a sentence in Bengali. Translate it into English.", "আমি আগামীকাল ঢাকায় যাব।"),
 ("Translate the user's text into Spanish. Output only the translation.", "The hotel breakfast is served from seven to ten."),
]:
    add(tr, S(sys, inp))
    add(tr, U("Definition: " + sys + "\nInput: " + inp + "\nOutput:"))
add(tr, M("Translate 'Where is the train station?' into German.", "Wo ist der Bahnhof?", "And in Polish?"))
add(tr, M("How do you say 'thank you' in Japanese?", "'Arigatou' (ありがとう), or more politely 'arigatou gozaimasu'.", "What about 'you're welcome'?"))
add(tr, M("Translate into Spanish: 'I would like to book a room for two nights.'", "Me gustaría reservar una habitación para dos noches.", "Now make it more formal."))
