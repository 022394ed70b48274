from gen_train_a import U, S, M, add, many
cw = "creative_writing"
many(cw, [
 "Compose an engaging travel blog post about a food tour through Mexico City, highlighting street food, markets and the people you met.",
 "Write an engaging blog post reviewing a newly opened neighbourhood cinema, in a warm and personal tone.",
 "Draft a professional email to a client apologising for a delayed delivery and offering a discount on their next order.",
 "Draft a polite email to my landlord asking to fix the broken heating before the weekend.",
 "Write a persuasive email to convince your introverted friend to volunteer as a speaker at a local event.",
 "Describe a vivid and unique character, a retired circus strongman who now runs a flower shop, using strong imagery and creative language.",
 "Write a descriptive paragraph about a bustling harbour at dawn, engaging all five senses.",
 "Craft an intriguing opening paragraph for a fantasy novel in which a girl discovers her shadow has a mind of its own.",
 "Write the opening scene of a thriller set on an overnight train across Europe.",
 "Create a short story about a baker who can taste people's memories in the bread they bring back.",
 "Write a 200-word short story that begins with the sentence: 'The letter arrived forty years too late.'",
 "Write a poem about the sea in the style of a Romantic poet.",
 "Compose a free-verse poem about a city after midnight.",
 "Write a haiku sequence about the four seasons in a vegetable garden.",
 "Compose a sonnet about the last day of summer holidays.",
 "Write a limerick about an absent-minded professor.",
 "Write song lyrics about leaving your hometown, with two verses and a chorus.",
 "Write a rap verse about getting up early for school.",
 "Tell me a joke about penguins.",
 "Write a funny short dialogue between a coffee machine and a tired office worker.",
 "Write a screenplay scene where two estranged sisters meet again at their father's funeral.",
 "Write a speech for a high school graduation that is inspiring but not cheesy.",
 "Write a best-man speech for my brother Marco, who loves football and terrible puns.",
 "Compose a retirement card message for a colleague who worked here for 35 years.",
 "Write a cover letter for a barista job at an independent coffee shop.",
 "Write a LinkedIn post announcing that I've started a new job as a data analyst.",
 "Create an Instagram caption for a photo of homemade lemon tarts.",
 "Write marketing copy for a language-learning app aimed at busy professionals.",
 "Come up with five catchy slogans for a bicycle repair shop.",
 "Write a catchy yet scientifically accurate headline for an article about a new study on sleep and memory; give me three options.",
 "Write a product description for noise-cancelling earbuds aimed at students.",
 "Write a short fable with a moral about patience, featuring a tortoise and a crow.",
 "Write a bedtime story about a dragon who is afraid of the dark.",
 "Continue this story: 'When Mara opened the old attic door, she found the room exactly as her grandmother had left it fifty years ago...'",
 "Write a diary entry from the perspective of a cat whose family has just brought home a puppy.",
 "Imagine you are a lighthouse on a stormy coast. Write a monologue about the ships you have guided home.",
 "As a Victorian explorer, write a letter home describing your first week in the Amazon rainforest.",
 "Pretend you are a superhero and write the speech you give when accepting an award from the city.",
 "Write a persuasive essay arguing that every school should teach cooking.",
 "Write an argumentative essay on whether homework should be banned in primary schools.",
 "Write a short op-ed arguing for more green spaces in city centres.",
 "Rewrite the following sentence in the style of Shakespeare: 'I can't come to your party because I have too much work.'",
 "Rewrite this paragraph to make it more formal: 'Hey guys, the meeting's moved to Thursday, don't be late, ok?'",
 "Edit the following paragraph to correct any grammatical errors: 'She don't like going to the gym but she go anyway because her doctor tell her to.'",
 "Make this product review sound more enthusiastic: 'The blender works. It's okay. It makes smoothies.'",
 "Paraphrase this sentence in simpler words for children: 'Photosynthesis is the process by which plants convert light energy into chemical energy.'",
 "Write a riddle whose answer is 'a shadow'.",
 "Give me a title for my short story about a girl who befriends a ghost in her school library.",
 "Write a motivational message for a team that just lost an important match.",
 "Write a birthday poem for my grandmother who is turning ninety.",
 "Write an advertisement for a small seaside bed and breakfast, in under 80 words.",
 "Create a dialogue in which a job candidate negotiates salary with a hiring manager.",
 "Write a short horror story that takes place in a smart home.",
 "Write a eulogy for a beloved family dog.",
])
add(cw, M("Write a short poem about autumn leaves.", "Copper, amber, crimson, gold,\nthe maples let their stories fold;\nthey spin and settle, soft and slow,\na quilt for roots that sleep below.", "Rewrite it so that every line rhymes with 'light'."))
add(cw, M("Write a product slogan for a solar-powered phone charger.", "Power from the sky, wherever you go.", "Now write a 50-word ad built around that slogan."))
add(cw, M("Write a short story about a robot who learns to paint.", "Unit 7 had been built to sort screws...", "Rewrite your previous response, but tell it from the painting's point of view."))
add(cw, M("Compose a tweet announcing our bakery's new opening hours.", "Good news, early birds! From Monday we open at 6:30 am. Fresh croissants are waiting!", "Make it funnier and add a pun."))
add(cw, M("Write a four-line poem about coffee.", "Dark and warm, my morning friend...", "Now turn it into a limerick."))
add(cw, M("Draft an email inviting colleagues to a farewell lunch for Jana.", "Subject: Farewell lunch for Jana! Hi all, as many of you know, Jana is leaving us at the end of the month...", "Now rewrite it in a more formal tone for the leadership team."))
add(cw, M("Write an opening line for a mystery novel.", "The clocks in Harwick House had all stopped at 3:17, and nobody would say why.", "Continue with the next paragraph, introducing the detective."))
for sys, inp in [
 ("In this task, you are given the beginning of a story. Write the next sentence so that the story continues in a coherent way.", "Lena had saved for months to buy a telescope. On the first clear night she carried it up to the roof."),
 ("In this task, you are given a story with the last sentence missing. Write an ending sentence that makes the story complete.", "Raj forgot his umbrella at home. Halfway to work, dark clouds gathered. He ran the last block as the first drops fell. He arrived at the office soaking wet."),
 ("Given a short story, write a title for it in at most five words.", "Every morning an old man fed the pigeons in the square. One winter he stopped coming. The children who had watched him started bringing bread themselves, and the square was never empty of birds."),
 ("In this task, you are given a summary of a story. Write a story of about five sentences based on it.", "A shy boy wins a school talent show by playing the spoons."),
 ("In this task, you are given a short story and a new ending. Rewrite the middle of the story so that it leads to the new ending.", "Story: Kim planted sunflowers. She watered them every day. A storm came. The flowers were flattened. Kim planted again.\nNew ending: Kim sold the sunflowers at the market."),
 ("Write a poem about the topic given by the user. The poem should be suitable for children.", "rainy days"),
 ("You write advertising copy. Create a short, lively advert for the product the user describes.", "a reusable lunch box with three compartments that keeps food warm for six hours"),
 ("Rewrite the user's text in a more polite and professional tone.", "Send me the files now, I've been waiting all day."),
]:
    add(cw, S(sys, inp))

import json, collections
rows = []
import gen_train_a
# Removed 2026-12-07: near-paraphrases of items of the public held-out set
# (data/classifier-eval/public_heldout.jsonl: Vicuna questions 9, 31, 34, 35, 64, 66, 71,
# WizardLM item 23). Ids of the other rows are unchanged.
REMOVED = {46, 47, 48, 52, 129, 130, 396}
for i, (task, msgs) in enumerate(gen_train_a.ROWS, 1):
    if i in REMOVED:
        continue
    rows.append(json.dumps({"id": f"switchyard-team4-{i}", "source": "switchyard-team", "task": task, "messages": msgs, "source_label": "hand7-bench-style", "split": "train"}, ensure_ascii=False))
print(collections.Counter(json.loads(r)["task"] for r in rows))
open("team_prompts_4.jsonl", "w").write("\n".join(rows) + "\n")
