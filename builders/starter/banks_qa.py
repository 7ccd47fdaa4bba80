"""Banks for the starter collection's quiz, reading and arithmetic tasks (facts and text written for taskmill)."""

ANIMAL_CLASSES = {
    "mammal": ["dolphin", "bat", "whale", "horse", "rabbit", "elephant", "otter", "hedgehog"],
    "bird": ["penguin", "ostrich", "owl", "sparrow", "eagle", "parrot"],
    "reptile": ["lizard", "crocodile", "tortoise", "snake", "gecko"],
    "fish": ["salmon", "shark", "trout", "cod", "goldfish"],
    "insect": ["ant", "beetle", "butterfly", "bee", "grasshopper"],
    "amphibian": ["frog", "toad", "salamander", "newt"],
}
STATES = {  # at room temperature (about 20 degrees Celsius)
    "solid": ["a copper coin", "a granite pebble", "a wooden spoon", "a glass marble", "an iron nail"],
    "liquid": ["water", "vinegar", "olive oil", "mercury", "milk"],
    "gas": ["oxygen", "helium", "carbon dioxide", "nitrogen", "neon"],
}
UNITS = {
    "length": ["metre", "centimetre", "kilometre", "millimetre"],
    "mass": ["kilogram", "gram", "tonne"],
    "time": ["second", "minute", "hour"],
    "volume": ["litre", "millilitre"],
    "temperature": ["degree Celsius", "kelvin"],
}
CONDUCTORS = ["a copper wire", "an aluminium can", "a steel paper clip", "a silver spoon"]
INSULATORS = ["a rubber band", "a plastic ruler", "a wooden stick", "a glass rod", "a cotton thread", "a paper towel"]
RENEWABLE = ["solar power", "wind power", "hydroelectric power", "geothermal heat", "tidal power"]
NON_RENEWABLE = ["coal", "oil", "natural gas"]
PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]  # order from the Sun
PLANETS_BY_SIZE = ["Jupiter", "Saturn", "Uranus", "Neptune", "Earth", "Venus", "Mars", "Mercury"]  # largest first
HERBIVORES = ["cow", "deer", "giraffe", "koala", "sheep", "horse"]
CARNIVORES = ["lion", "wolf", "shark", "tiger", "polar bear", "eagle"]
# (question, correct answer, three wrong answers)
FIXED_FACTS = [
    ("Which organ pumps blood around the body?", "the heart", ["the lungs", "the stomach", "the liver"]),
    ("Which organ takes in oxygen from the air we breathe?", "the lungs", ["the heart", "the kidneys", "the brain"]),
    ("What do plants mainly need from sunlight to make their food?", "energy", ["salt", "heat only", "soil"]),
    ("What is the main gas that plants take in to make food?", "carbon dioxide", ["oxygen", "helium", "nitrogen"]),
    ("At sea level, at what temperature does pure water boil?", "100 degrees Celsius", ["50 degrees Celsius", "0 degrees Celsius", "212 degrees Celsius"]),
    ("At what temperature does pure water freeze?", "0 degrees Celsius", ["10 degrees Celsius", "-20 degrees Celsius", "100 degrees Celsius"]),
    ("What causes day and night on Earth?", "Earth spinning on its axis", ["Earth orbiting the Sun", "the Moon blocking the Sun", "clouds covering the sky"]),
    ("How long does Earth take to travel once around the Sun?", "about one year", ["about one day", "about one month", "about ten years"]),
    ("What force pulls objects towards the ground?", "gravity", ["magnetism", "friction", "electricity"]),
    ("Which part of a plant takes up water from the soil?", "the roots", ["the petals", "the leaves", "the seeds"]),
    ("What is formed when water vapour cools in the sky?", "clouds", ["sand", "rocks", "wind"]),
    ("Which of these is a source of light?", "the Sun", ["the Moon", "a mirror", "a window"]),
    ("What happens to most metals when they are heated?", "they expand", ["they shrink", "they turn into gas at once", "they become magnetic"]),
    ("Which sense organ detects sound?", "the ear", ["the nose", "the tongue", "the skin"]),
    ("What do bees collect from flowers to make honey?", "nectar", ["pollen only", "leaves", "seeds"]),
    ("Which layer of the Earth do we live on?", "the crust", ["the inner core", "the outer core", "the mantle"]),
    ("What is the closest star to Earth?", "the Sun", ["Polaris", "Sirius", "the Moon"]),
    ("Which material is attracted to a magnet?", "iron", ["wood", "plastic", "glass"]),
    ("What does a thermometer measure?", "temperature", ["weight", "speed", "length"]),
    ("Which change is a chemical change?", "wood burning", ["ice melting", "water boiling", "paper being folded"]),
]

# Fictional biographies for extractive QA. Each person: name, pronoun, year, birthplace, subject,
# university, job, employer, achievement, hobby.
FIRST_NAMES = ["Amara", "Bruno", "Celia", "Dmitri", "Esther", "Faisal", "Gwen", "Hiroshi", "Ines", "Jakob",
               "Kamala", "Lorenzo", "Maeve", "Nikhil", "Odette", "Pablo", "Ruth", "Stellan", "Tamsin", "Viktor"]
SURNAMES = ["Achterberg", "Bellweather", "Castellano", "Dunmore", "Eriksen", "Fairclough", "Goswami", "Holloway",
            "Ibekwe", "Jansen", "Kowalczyk", "Lachance", "Moreau", "Nakagawa", "Oyelaran", "Pennington"]
BIRTHPLACES = ["Port Adley", "Carrow Vale", "Westmoor", "Linford", "Ashcombe", "Kelder Bay", "Norwick", "Stanmere"]
SUBJECTS = ["chemistry", "architecture", "marine biology", "economics", "music", "mechanical engineering", "history", "mathematics"]
UNIVERSITIES = ["the University of Elmbridge", "Farrowdale College", "the Quillon Institute of Technology", "Brackenhurst University"]
JOBS = {
    "chemistry": ("a research chemist", "designed a cheaper water filter"),
    "architecture": ("an architect", "designed the floating library in Kelder Bay"),
    "marine biology": ("a marine biologist", "discovered a new species of sea slug"),
    "economics": ("an economist", "wrote a best-selling book about household debt"),
    "music": ("a composer", "wrote the score for an award-winning film"),
    "mechanical engineering": ("an engineer", "built a wind turbine small enough for a balcony"),
    "history": ("a historian", "found a lost map of the old city walls"),
    "mathematics": ("a mathematician", "solved a puzzle that had stood for eighty years"),
}
EMPLOYERS = ["Halden Labs", "Northlight Studio", "Brightwater Trust", "Meridian Works", "Oakhurst & Co."]
HOBBIES = ["long-distance cycling", "beekeeping", "chess", "sea swimming", "growing chillies", "restoring old radios"]

# Arithmetic word problem frames are in make_data.py (they compute their answers).
ITEMS = [("notebook", "notebooks"), ("apple", "apples"), ("pencil", "pencils"), ("sandwich", "sandwiches"),
         ("ticket", "tickets"), ("candle", "candles"), ("plant pot", "plant pots"), ("mug", "mugs")]
PEOPLE = [("Ava", "she"), ("Ravi", "he"), ("Lena", "she"), ("Marcus", "he"), ("Yuki", "she"), ("Omar", "he"),
          ("Nadia", "she"), ("Callum", "he")]
VEHICLES = ["train", "coach", "cyclist", "ferry", "delivery van"]
