"""Phrase banks for the starter collection's review and message tasks (text written for taskmill).

Each bank is a plain list or dict; ``make_data.py`` combines them with a seeded RNG.
"""

PRODUCTS = {
    "kettle": ["It boils a full jug in about two minutes.", "It takes ages to boil and the lid never quite shuts."],
    "headset": ["The sound is clear and the bass never drowns out voices.", "The sound is tinny and the left side crackles at high volume."],
    "backpack": ["The straps stay comfortable even with a laptop and lunch inside.", "The straps dig into my shoulders after ten minutes."],
    "desk lamp": ["The light is bright and even, with no flicker.", "The light flickers whenever the desk moves."],
    "rain jacket": ["It kept me dry through a two-hour downpour.", "It soaked through within ten minutes of drizzle."],
    "blender": ["It turns frozen fruit into a smooth drink in seconds.", "It leaves lumps of ice no matter how long it runs."],
    "phone case": ["It survived a drop onto concrete without a scratch on the phone.", "It cracked at the corner the first time the phone slipped."],
    "electric toothbrush": ["The battery lasts about three weeks between charges.", "The battery needs charging every other day."],
    "office chair": ["My back no longer aches at the end of the day.", "The seat cushion went flat within a month."],
    "frying pan": ["Eggs slide right off and it heats evenly.", "The coating started peeling after a couple of weeks."],
    "umbrella": ["It stayed the right way out in a proper gale.", "It turned inside out in the first gust of wind."],
    "board game": ["Every round plays differently and the rules take five minutes to learn.", "The rulebook is confusing and the games drag on for hours."],
    "water bottle": ["It keeps drinks cold all day and never leaks in my bag.", "It leaks around the lid, so my bag is always damp."],
    "vacuum cleaner": ["It picks up pet hair from carpet in a single pass.", "It pushes crumbs around instead of picking them up."],
}

POSITIVE_GENERIC = [
    "The {product} feels solid and well made.",
    "Setting it up took less than five minutes.",
    "For the price, it is excellent value.",
    "It looks even better in person than in the photos.",
    "It does exactly what the description promises.",
    "After two months of daily use it still works like new.",
    "It arrived well packed and a day earlier than expected.",
]
NEGATIVE_GENERIC = [
    "The {product} feels cheap and flimsy.",
    "The instructions were useless and setup took an hour.",
    "It is badly overpriced for what you get.",
    "It looks nothing like the photos on the listing.",
    "It does not do half of what the description claims.",
    "It stopped working properly after three weeks.",
    "It arrived in a crushed box with a part missing.",
]
POSITIVE_CAVEATS = [
    "The only thing I would change is the colour, which is a bit duller than pictured.",
    "The box was bigger than it needed to be, but that is a minor gripe.",
    "It is slightly heavier than I expected, though that has not been a problem.",
]
NEGATIVE_CAVEATS = [
    "To be fair, it did arrive quickly.",
    "The colour is nice, but that does not make up for the rest.",
    "Customer service was polite, even if they could not fix it.",
]
POSITIVE_OPENERS = ["Really pleased with this {product}.", "I bought this {product} for my flat and I love it.",
                    "Best {product} I have owned.", "Bought this {product} as a gift and ended up getting one for myself."]
NEGATIVE_OPENERS = ["Very disappointed with this {product}.", "I regret buying this {product}.",
                    "This is the worst {product} I have owned.", "I wanted to like this {product}, but I can't."]
POSITIVE_CLOSERS = ["Would happily buy it again.", "Highly recommended.", "Five stars from me.", "No regrets at all."]
NEGATIVE_CLOSERS = ["I am sending it back.", "Save your money.", "One star, and that is generous.", "Avoid."]
POSITIVE_TITLES = ["Does the job brilliantly", "Great value", "Exactly what I needed", "Impressed", "A keeper"]
NEGATIVE_TITLES = ["Not worth it", "Fell apart quickly", "Disappointing", "Do not buy", "Waste of money"]

RESTAURANT_NAMES = ["The Copper Pot", "Luna Kitchen", "Harbour Grill", "Olive and Thyme", "The Red Lantern",
                    "Marigold Cafe", "Saltwater Bistro", "The Green Fig", "Ember House", "Cedar Table"]
OCCASIONS = ["for a birthday dinner", "for a quick lunch", "on a Friday night", "with two colleagues",
             "for Sunday brunch", "after a concert", "with my parents"]
# aspect -> (positive sentences, negative sentences)
RESTAURANT_ASPECTS = {
    "food": (["The pasta was cooked perfectly and the sauce was rich.", "Every dish arrived hot and beautifully seasoned.",
              "The grilled fish was the best I have had in years."],
             ["The pasta was overcooked and the sauce tasted of the tin.", "My steak came out cold in the middle.",
              "The soup was so salty I could not finish it."]),
    "service": (["Our waiter was friendly and knew the menu inside out.", "The staff were attentive without hovering.",
                 "They happily adjusted a dish for my allergy."],
                ["We had to flag someone down three times to order.", "The waiter was curt and forgot our drinks.",
                 "Nobody checked on us once the food arrived."]),
    "atmosphere": (["The room is cosy, with soft lighting and quiet music.", "It has a lovely terrace overlooking the river."],
                   ["It was so loud we could barely hear each other.", "The tables are crammed together and the room felt stuffy."]),
    "price": (["Prices are fair for the portion sizes.", "The lunch menu is a real bargain."],
              ["It is far too expensive for what arrives on the plate.", "The bill had a service charge nobody mentioned."]),
    "wait": (["Food came out quickly even though it was busy.", "We were seated straight away."],
             ["We waited fifty minutes for our mains.", "Our table was not ready despite the booking."]),
}
RESTAURANT_CLOSERS = {
    0: ["We will not be going back.", "Cannot recommend it.", "A wasted evening."],
    1: ["Worth a try if you are nearby, but keep your expectations modest.", "A mixed experience overall.",
        "Good in parts; I might give it another chance."],
    2: ["We will definitely be back.", "Highly recommended.", "One of the best meals we have had this year."],
}
CONTRASTS = ["However,", "On the other hand,", "That said,", "Unfortunately,", "Still,"]

# intent -> problem statements ({order}, {amount}, {day}, {device} are filled in)
SUPPORT_PROBLEMS = {
    0: ["I was charged {amount} twice for the same order.", "My invoice shows {amount} but the checkout said less.",
        "There is a payment of {amount} on my card that I do not recognise.", "My monthly plan went up to {amount} without any notice.",
        "I cancelled my subscription but was still billed {amount} on {day}.", "Can you send me a VAT invoice for order {order}?"],
    1: ["Order {order} was supposed to arrive on {day} and it still has not come.", "The tracking for order {order} has not moved in a week.",
        "The courier says order {order} was delivered, but nothing is here.", "Can I change the delivery address for order {order}?",
        "My parcel was left in the rain and the box is soaked.", "Order {order} arrived with only half of the items."],
    2: ["The app crashes every time I open it on my {device}.", "I cannot connect my {device} to the home Wi-Fi since the update.",
        "The screen on my {device} goes black after a few minutes.", "Syncing between my {device} and the website keeps failing.",
        "I get an error saying the server is unavailable whenever I upload a file.", "The sound cuts out on my {device} during calls."],
    3: ["I cannot log in even though my password is correct.", "My account was locked after too many attempts.",
        "I never received the password reset email.", "I need to change the email address on my account.",
        "Someone else seems to have logged into my account on {day}.", "How do I turn on two-step verification?"],
    4: ["I would like to return order {order}; it does not fit.", "How long does a refund usually take? I sent order {order} back on {day}.",
        "The item in order {order} is faulty and I want my money back.", "I returned order {order} but have not been refunded {amount} yet.",
        "Can I exchange order {order} for a different size?", "Your returns page will not generate a label for order {order}."],
}
SUPPORT_GREETINGS = ["Hi,", "Hello,", "Hi there,", "Good morning,", "", "", "To whom it may concern,"]
SUPPORT_REQUESTS = {
    0: ["Please sort this out.", "Could you refund the difference?", "Can someone explain the charge?", ""],
    1: ["Where is it?", "Please let me know what is happening.", "Can you chase the courier?", ""],
    2: ["Is there a fix?", "I have already tried restarting it.", "What should I try next?", ""],
    3: ["Please help me get back in.", "What do I need to do?", "This is urgent.", ""],
    4: ["What are the next steps?", "Please confirm when it is processed.", "Thanks in advance.", ""],
}
SUPPORT_SIGNOFFS = ["Thanks, {name}", "Regards, {name}", "{name}", "", "", "Cheers"]
DEVICES = ["phone", "tablet", "laptop", "smart TV", "smartwatch"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
