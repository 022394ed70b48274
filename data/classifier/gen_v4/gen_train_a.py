# Training prompts v4 (hand7-bench-style): written to the labelling guide in the styles of public benchmark sets
# (multi-turn questions, open-ended instructions, evolved long instructions, function stubs, task definitions).
# Original texts; no benchmark prompt copied.
ROWS = []
def U(t): return [{"role": "user", "content": t}]
def S(s, t): return [{"role": "system", "content": s}, {"role": "user", "content": t}]
def M(*turns): return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
def add(task, msgs): ROWS.append((task, msgs))
def many(task, texts):
    for t in texts: add(task, U(t))

sc = "simple_chat"
many(sc, [
 # knowledge / STEM / humanities explanations
 "How do tides work, and why are there usually two high tides a day?",
 "What is the difference between a virus and a bacterium, and why don't antibiotics work on colds?",
 "Explain how a credit score is calculated and what affects it the most.",
 "In physics, what does entropy actually mean? I keep hearing it described as disorder.",
 "What is quantum entanglement, explained without equations?",
 "How did the Silk Road influence the exchange of ideas between East and West?",
 "Why did the Roman Empire eventually split into eastern and western halves?",
 "What role did women play in the workforce during the Second World War, and how did it change afterwards?",
 "Explain the concept of opportunity cost with an everyday example.",
 "What is the greenhouse effect and which gases contribute most to it?",
 "How do antidepressants like SSRIs work in the brain, in simple terms?",
 "What is inflation, and why do central banks try to keep it around two percent?",
 "Describe the main stages of the water cycle.",
 "How does the electoral college work in US presidential elections?",
 "What are the main schools of thought in moral philosophy, and how do they differ?",
 "Why is the sky blue during the day but red and orange at sunset?",
 "What causes earthquakes, and why are some regions much more prone to them?",
 "How do plants know which way is up when they grow?",
 "What is the difference between an ETF and a mutual fund?",
 "Explain what CRISPR is and why scientists are excited about it.",
 "What were the main causes of the 2008 financial crisis?",
 "How do bees communicate where flowers are to the rest of the hive?",
 "What makes a language a 'dialect' rather than a separate language?",
 "Why does ice float on water when most solids sink in their liquids?",
 "Explain how the immune system can sometimes attack the body's own cells.",
 "What is the significance of the Renaissance in European art history?",
 "How does GPS figure out where my phone is?",
 "What's the difference between machine learning and traditional programming, conceptually?",
 # Vicuna generic / advice
 "How can I become a better public speaker if I get very nervous in front of groups?",
 "What are the most effective ways to save money on groceries without eating badly?",
 "How do I stay motivated to learn a language when progress feels slow?",
 "What are some healthy ways to cope with the stress of moving to a new city?",
 "How can I build better sleep habits when I work irregular shifts?",
 "What are good strategies for making friends as an adult after moving abroad?",
 "How should I prepare for my first job interview after university?",
 "What should I look for when adopting a rescue dog?",
 "How can I reduce my household's plastic waste in realistic, small steps?",
 "What are the benefits and drawbacks of working at a startup versus a large company?",
 "How can parents help teenagers manage their screen time without constant arguments?",
 "I'm a new manager. How do I give critical feedback without demotivating people?",
 "What are some tips for travelling on a tight budget in Southeast Asia?",
 "How do I know if I'm ready to run a half marathon?",
 # counterfactual / opinion / common sense
 "What if humans had never domesticated dogs? How might history have been different?",
 "What would happen to daily life if the internet went down worldwide for a month?",
 "If the Library of Alexandria had never burned, how might science have progressed?",
 "How can you tell whether a restaurant is popular with locals or mainly with tourists?",
 "Why might someone prefer to shop at a small local store even when it is more expensive?",
 "How can you tell if a person is genuinely interested in a conversation or just being polite?",
 "Do you think remote work is good or bad for company culture in the long run?",
 "Is it worth learning to play an instrument as an adult?",
 # WizardLM-style evolved, long, multi-clause explanatory requests (still explanation/advice)
 "Could you provide a detailed explanation of how the European Union makes laws, covering the roles of the Commission, the Parliament and the Council, and how they interact when they disagree?",
 "Please analyze the main factors that influence consumer behaviour when people choose a new smartphone, considering price, brand loyalty, social influence and marketing.",
 "Discuss the impact of globalization on small local businesses in developing countries, considering both the opportunities and the challenges they face.",
 "What are the major social, economic and environmental effects of mass tourism on small island nations, and how have some of them tried to manage it?",
 "Explain in detail the differences between classical and operant conditioning, giving real-world examples of each and noting their limitations.",
 "Evaluate the advantages and disadvantages of nuclear power as part of a country's energy mix, taking into account safety, cost, waste and emissions.",
 "Describe how the Industrial Revolution transformed family life and working conditions in nineteenth-century Britain, and mention the reforms that followed.",
 "Considering recent research, what are the key factors that contribute to a long and healthy life, and how much of it is down to genetics versus lifestyle?",
 "Elaborate on the causes and consequences of the decline of honeybee populations, and suggest what governments and individuals can do to help.",
 "Examine the role of central banks in managing a recession, including interest rates and quantitative easing, and explain the risks of each tool.",
 "Can you explain the concept of cognitive dissonance, how it influences people's decisions, and give some everyday examples where it shows up?",
 "Provide an overview of how vaccines are developed and approved, from the lab to public use, and why the process usually takes years.",
 "Analyze how streaming services have changed the music industry, both for artists' income and for how listeners discover new music.",
 "What are the main arguments for and against a universal basic income, and what have pilot programmes found so far?",
 "In what ways do cultural differences affect communication styles in international business meetings, and how can a team adapt?",
 "Describe the process of photosynthesis step by step and explain why it matters for life on Earth.",
 "Explain step by step how a bill becomes a law in the United States.",
 "Walk me through how a home loan application works, from pre-approval to getting the keys.",
 "Compare the educational systems of Finland and South Korea and discuss why both are considered successful despite their differences.",
 "Discuss the ethical implications of using artificial intelligence in hiring decisions, and what safeguards companies should put in place.",
 "How has climate change affected agriculture in sub-Saharan Africa, and what adaptation strategies are farmers using?",
 "Assess the long-term consequences of the Cold War on international relations today.",
 # short chat
 "good morning! any idea what I should cook tonight with chickpeas and spinach?",
 "hey, what's a good podcast for someone who likes history?",
 "Can you recommend three classic novels for someone who loved 'The Secret History'?",
 "Give me some ideas for a themed dinner party for eight friends.",
 "What are some good names for a black and white cat?",
 "What are fun things to do in Copenhagen in winter?",
 "Thanks, that was helpful! One more thing: should I bring cash or is card accepted everywhere there?",
])
# role-play conversation (persona asked to converse/advise), MT-Bench/Vicuna style
many(sc, [
 "Pretend to be a friendly barista for this conversation. I'd like something warm but without much caffeine, what do you recommend?",
 "From now on, act as a fitness trainer. I can train three times a week for 40 minutes. What should my routine look like?",
 "Imagine you are a doctor. I've had a mild headache every afternoon for a week. What might be causing it and when should I worry?",
 "You are a travel agent. I want a relaxing beach holiday in Europe in October with kids. Where would you send me?",
 "Play the role of a librarian and help me find a good book to get started with astronomy.",
 "Act as a financial advisor: I'm 30, have some savings and no debt. What should I think about first?",
 "Pretend you're an astronaut who just returned from six months on the space station. What was the hardest part of coming back?",
 "Suppose you are a historian specialising in ancient Egypt. Why were the pyramids built where they are?",
 "Be my language exchange partner: ask me a few questions about my hobbies, in simple English.",
 "Imagine you are a chef in a busy restaurant. What's the secret to a good risotto?",
])
# multi-turn follow-ups that stay simple_chat
add(sc, M("What is the best time of year to visit Japan?", "Spring (late March to early May) for cherry blossoms and autumn (October to November) for the colours are the most popular.", "Which one is less crowded?"))
add(sc, M("Explain what a black hole is.", "A black hole is a region of space where gravity is so strong that nothing, not even light, can escape once it passes the event horizon.", "So what happens to things that fall in?"))
add(sc, M("What are the health benefits of green tea?", "Green tea contains antioxidants, a little caffeine and L-theanine, and is linked to modest benefits for alertness and heart health.", "Is it okay to drink it every day?"))
add(sc, M("I'm thinking about getting a bike for commuting.", "Great idea! How long is your commute and what is the terrain like?", "About 8 km, mostly flat, with some rain. What kind of bike should I get?"))
add(sc, M("Why did the dinosaurs go extinct?", "The leading explanation is an asteroid impact about 66 million years ago, combined with massive volcanic activity.", "How do scientists know it was an asteroid?"))
add(sc, M("Can you suggest some hobbies I could start in winter?", "Sure: knitting, indoor climbing, learning an instrument, baking bread, board games or a pottery class.", "I like working with my hands. Which of those would you pick?"))
add(sc, M("What are the symptoms of burnout?", "Common signs include exhaustion, cynicism about work, reduced performance, trouble sleeping and feeling detached.", "How is that different from depression?"))
add(sc, M("Who was Ada Lovelace?", "Ada Lovelace was a 19th-century English mathematician, known for her notes on Charles Babbage's Analytical Engine.", "Why is she called the first programmer?"))
# NI-style open QA / dialogue
for sys, inp in [
 ("In this task, you are given a question about general knowledge. Provide a short, direct answer.", "what is the capital of canada"),
 ("In this task, you are given a question about general knowledge. Provide a short, direct answer.", "how many bones are in the adult human body"),
 ("Answer the following trivia question with a single name or number.", "Which composer wrote the Four Seasons?"),
 ("You are given a dialogue. Generate the next response of the speaker who is the assistant, being helpful and polite.", "User: hi, i'm looking for a vegetarian restaurant near the station\nAssistant: Sure! Do you prefer something casual or more formal?\nUser: casual, and not too expensive"),
 ("In this task, you're given a statement from an improv scene. Respond with a line that accepts it and adds something new ('yes, and').", "Captain, the ship's cat has learned to steer and is heading for the iceberg!"),
 ("Given a person's question on a community forum, write a helpful answer as a friendly neighbour would.", "Does anyone know whether the recycling centre accepts old paint cans?"),
]:
    add(sc, S(sys, inp))
