"""Phrase banks for the starter collection's news tasks (fictional places and people, text written for taskmill).

A frame is ``(headline, body)``; ``{slots}`` are filled from :data:`SLOTS` with a seeded RNG. Topic
frames (:data:`TOPIC_FRAMES`) feed the topic task; :data:`HEADLINE_FRAMES` feed the headline task
and are disjoint from them, so the two tasks never share an article.
"""

TOWNS = ["Elmbridge", "Port Adley", "Carrow Vale", "Westmoor", "Linford", "Ashcombe", "Brackenhurst",
         "Kelder Bay", "Norwick", "Stanmere", "Farrowdale", "Quillon"]
PEOPLE = ["Maria Okafor", "Daniel Reyes", "Priya Natarajan", "Tom Haldane", "Aiko Mori", "Samuel Brandt",
          "Leila Haddad", "Owen Pritchard", "Grace Mbeki", "Jonas Lindqvist", "Rosa Delgado", "Felix Adeyemi"]
SLOTS = {
    "town": TOWNS, "town2": TOWNS, "person": PEOPLE, "person2": PEOPLE,
    "n1": [str(n) for n in range(5, 10)], "n2": [str(n) for n in range(1, 5)],
    "score1": [str(n) for n in range(2, 6)], "score2": [str(n) for n in range(0, 2)],
    "pct": [str(n) for n in (3, 4, 6, 8, 12, 15, 20)], "jobs": ["80", "120", "250", "400", "600"],
    "money": ["2 million", "4.5 million", "12 million", "30 million", "75 million"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
    "policy": ["ban cars from the old market square", "build 300 affordable homes on the former rail yard",
               "cut the speed limit near schools to 20 mph", "extend library opening hours", "raise parking fees in the centre"],
    "sport_team": ["Rovers", "United", "Athletic", "Harriers", "Wanderers"],
    "company_kind": ["a battery maker", "a software firm", "a furniture maker", "a logistics company", "a food processor"],
    "product": ["a cheaper electric van", "a folding e-bike", "a solar roof tile", "a budget smartphone", "a plant-based cheese"],
    "creature": ["beetle", "frog", "moss", "bat", "orchid"],
    "science_field": ["physicists", "marine biologists", "astronomers", "geologists", "chemists"],
    "finding": ["a new way to store heat in salt", "a comet passing unusually close to Mars", "bacteria that break down plastic bags",
                "a faster method for recycling lithium", "an ancient riverbed beneath the ice"],
    "art_kind": ["a photography exhibition", "a jazz festival", "a new opera", "a touring production of Hamlet", "a mural trail"],
    "book_kind": ["debut novel", "memoir", "poetry collection", "children's book", "crime thriller"],
    "weather": ["heavy rain", "a late frost", "strong winds", "a week of snow", "record heat"],
    "venue": ["bakery", "bookshop", "climbing gym", "community cafe", "cinema", "repair shop"],
    "school": ["St Anne's Primary", "Linford Academy", "Harbour High School", "Oakfield College"],
}

# label -> frames; 0=politics, 1=sports, 2=business, 3=science, 4=arts and culture
TOPIC_FRAMES = {
    0: [("{town} council votes to {policy}", "Councillors in {town} voted {n1} to {n2} on {day} to {policy}. Supporters said the plan was overdue, while opponents promised to keep campaigning against it."),
        ("{person} launches bid to lead the regional assembly", "{person}, a former mayor of {town}, announced a bid on {day} to lead the regional assembly, with a promise to {policy}."),
        ("Opposition demands inquiry into {town} housing budget", "Opposition members called on {day} for an independent inquiry after the {town} housing budget overran by {money} pounds."),
        ("Minister visits {town} ahead of local elections", "The transport minister toured {town} on {day}, weeks before local elections in which a pledge to {policy} has become the main issue.")],
    1: [("{town} {sport_team} beat {town2} {score1}-{score2}", "{town} {sport_team} won {score1}-{score2} against {town2} on {day}, with {person} scoring twice in the second half to lift the side to third in the league."),
        ("{person} breaks club record in {town} marathon", "{person} finished the {town} marathon on {day} in a club record time, ahead of more than {jobs} runners."),
        ("Injury blow for {town} {sport_team} before cup semi-final", "{town} {sport_team} will be without captain {person} for the cup semi-final after an ankle injury in training on {day}."),
        ("{town} swimmer {person} qualifies for national finals", "Seventeen-year-old {person} from {town} qualified for the national swimming finals on {day}, cutting two seconds from a personal best set last year.")],
    2: [("{company_kind_cap} to create {jobs} jobs in {town}", "{company_kind_cap} said on {day} it will open a plant in {town}, creating {jobs} jobs and investing {money} pounds over five years."),
        ("Shares jump {pct}% after {town} firm unveils {product}", "Shares in a {town}-based company rose {pct}% on {day} after it unveiled {product}, which it says will reach shops next spring."),
        ("{town} retailers report {pct}% drop in sales", "Shops in {town} saw sales fall by {pct}% last month, according to figures published on {day}, as shoppers cut back on spending."),
        ("{person} named chief executive of {company_kind}", "{company_kind_cap} has appointed {person} as chief executive, it said on {day}, after a year in which profits fell by {pct}%.")],
    3: [("{science_field_cap} report {finding}", "A team of {science_field} at the University of {town} reported {finding} in a study published on {day}, and say the result still needs to be confirmed by other groups."),
        ("Rare {creature} found in {town} nature reserve", "Volunteers surveying the {town} nature reserve found a {creature} species not recorded in the region for fifty years, ecologists said on {day}."),
        ("{town} telescope captures {finding}", "Images from the observatory outside {town}, released on {day}, show what {science_field} describe as {finding}."),
        ("Study led by {person} questions common diet advice", "A study of {jobs} volunteers led by {person} of the University of {town} found no benefit from skipping breakfast, contradicting popular advice.")],
    4: [("{town} to host {art_kind} this summer", "{art_kind_cap} will open in {town} in July, organisers said on {day}, with tickets priced to attract families."),
        ("{person}'s {book_kind} wins regional prize", "{person} has won the regional book prize for a {book_kind} set in {town}, judges announced on {day}."),
        ("Old cinema in {town} reopens as arts centre", "A cinema in {town} that closed a decade ago reopened on {day} as an arts centre after a {money} pound restoration."),
        ("{person} directs {art_kind} in {town}", "{person} will direct {art_kind} at the {town} theatre this autumn, a first production at home after a decade of touring.")],
}

HEADLINE_FRAMES = [
    ("{weather_cap} closes roads around {town}", "Several roads around {town} were closed on {day} after {weather} caused flooding and fallen trees. Police asked drivers to avoid the area until crews had cleared the way."),
    ("New {venue} opens on {town} high street", "A new {venue} opened on the high street in {town} on {day}, filling a shop that had been empty for two years. The owner, {person}, said the first week had been busier than expected."),
    ("{school} pupils win national science contest", "A team from {school} in {town} won a national science contest on {day} with a project on {finding}. Their teacher, {person}, said the pupils had worked on it every lunchtime for months."),
    ("Bus service between {town} and {town2} to be cut", "The bus company running the route between {town} and {town2} said on {day} it will halve the number of services from next month, blaming a shortage of drivers."),
    ("Volunteers plant {jobs} trees in {town} park", "More than {jobs} trees were planted in the main park in {town} on {day} by volunteers, part of a plan to double the town's tree cover within ten years."),
    ("{town} bridge to close for six months of repairs", "The main bridge in {town} will close for six months from {day} so that engineers can replace its supports, the council said, with a ferry laid on for pedestrians."),
    ("{person} celebrates 100th birthday in {town}", "{person} turned 100 on {day} and celebrated with a party at the community hall in {town}, telling guests that the secret to a long life was a daily walk and a good argument."),
    ("Hospital in {town} opens new children's ward", "A children's ward built with {money} pounds from local fundraising opened at the hospital in {town} on {day}. Staff said it doubles the number of beds for young patients."),
    ("{weather_cap} delays harvest for {town} farmers", "Farmers around {town} say {weather} has delayed the harvest by almost three weeks, and some fear they will lose part of their crop."),
    ("{town} library lends out {jobs} tools in first month", "A tool library set up in {town} lent out {jobs} drills, ladders and saws in its first month, organiser {person} said on {day}."),
]
