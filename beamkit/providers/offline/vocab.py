"""The words of the offline world: what each one means, which dimension it belongs to,
and which other words it contradicts.

Every other module of the offline set reads prompts through :func:`find_terms`, so the
LLM that writes prompts, the painter that draws them and the judge that scores them all
agree on one vocabulary.

A *term* is one concept ("dawn") with several surface *forms* ("dawn", "sunrise",
"daybreak"). The first form is the term's own word: a prompt that uses it gets full
credit for the concept, another form gets partial credit (see ``vision.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

#: Content (WHAT) and execution (HOW) categories, SPEC section 2.
WHAT_CATEGORIES = ("subject", "setting", "time", "weather", "season", "mood", "action", "color")
HOW_CATEGORIES = ("lighting", "composition", "palette", "texture", "medium")


@dataclass(frozen=True)
class Term:
    key: str
    category: str
    forms: tuple[str, ...]
    phrase: str = "{}"  # how the term is written into a prompt; "{}" is the form
    group: str | None = None  # terms of one group contradict each other
    clash: tuple[str, ...] = ()  # further keys this term contradicts

    @property
    def word(self) -> str:
        return self.forms[0]

    @property
    def dimension(self) -> str:
        return "what" if self.category in WHAT_CATEGORIES else "how"

    def say(self, form: str | None = None) -> str:
        return self.phrase.format(form or self.word)


def _t(key: str, category: str, forms: str, phrase: str = "{}", group: str | None = None, clash: str = "") -> Term:
    return Term(key, category, tuple(f.strip() for f in forms.split("|")), phrase, group, tuple(c for c in clash.split() if c))


# Lists are ordered from the most ordinary choice to the most adventurous one: a sampler at
# low temperature stays near the front, a hot one roams the whole list.
TERMS: tuple[Term, ...] = (
    # ---- time of day: the sky, the light source and the overall brightness -------------
    _t("day", "time", "day|daytime|daylight|noon|midday|morning|afternoon|sunny day", "in broad {}", "time"),
    _t("sunset", "time", "sunset|dusk|evening|sundown", "at {}", "time"),
    _t("dawn", "time", "dawn|sunrise|daybreak|first light", "at {}", "time"),
    _t("night", "time", "night|midnight|nighttime|starry night", "at {}", "time"),
    _t("twilight", "time", "twilight|blue hour", "at {}", "time"),
    # ---- weather and atmosphere ---------------------------------------------------------
    _t("clouds", "weather", "clouds|cloudy|overcast", "with rolling {}"),
    _t("fog", "weather", "fog|foggy|mist|misty|haze|hazy", "in thick {}"),
    _t("rain", "weather", "rain|rainy|raining|drizzle", "in the {}"),
    _t("snow", "weather", "snow|snowy|snowfall|snowing|blizzard", "covered in {}", clash="summer desert"),
    _t("storm", "weather", "storm|stormy|thunderstorm|lightning", "under a {} sky", clash="clear"),
    _t("clear", "weather", "clear sky|cloudless", "under a {}", clash="storm rain fog clouds"),
    _t("rainbow", "weather", "rainbow", "with a {}"),
    _t("aurora", "weather", "aurora|northern lights|aurora borealis", "under the {}", clash="day"),
    # ---- seasons ------------------------------------------------------------------------
    _t("autumn", "season", "autumn|fall|autumnal", "in {}", "season"),
    _t("winter", "season", "winter|wintry", "in {}", "season"),
    _t("spring", "season", "spring|springtime", "in {}", "season"),
    _t("summer", "season", "summer|summertime", "in {}", "season"),
    # ---- settings: the ground, the horizon and what fills it ------------------------------
    _t("forest", "setting", "forest|woods|woodland|grove", "in a {}"),
    _t("mountain", "setting", "mountains|mountain|peaks|alps|summit|mountain range", "beneath towering {}"),
    _t("ocean", "setting", "ocean|sea|waves|seascape|open water", "by the {}"),
    _t("city", "setting", "city|cityscape|skyline|metropolis|downtown|skyscrapers", "in a sprawling {}"),
    _t("lake", "setting", "lake|pond", "beside a still {}"),
    _t("field", "setting", "meadow|field|prairie|grassland|wheat field", "across a wide {}"),
    _t("hills", "setting", "hills|rolling hills|hillside|valley", "among {}"),
    _t("beach", "setting", "beach|shore|coast|coastline|seaside", "on a sandy {}"),
    _t("desert", "setting", "desert|dunes|sand dunes", "in a vast {}", clash="snow"),
    _t("river", "setting", "river|stream|creek", "along a winding {}"),
    _t("village", "setting", "village|town|street|old town", "in a small {}"),
    _t("garden", "setting", "garden|park|flower garden", "in a {}"),
    _t("cliff", "setting", "cliff|cliffs|rocky cliff|cliffside", "on a {}"),
    _t("island", "setting", "island|islet", "on a remote {}"),
    _t("jungle", "setting", "jungle|rainforest", "deep in a {}"),
    _t("space", "setting", "outer space|space|galaxy|nebula|cosmos", "far out in {}"),
    _t("underwater", "setting", "underwater|coral reef|seabed", "{}"),
    _t("glacier", "setting", "glacier|arctic|iceberg|tundra", "on an {}"),
    _t("canyon", "setting", "canyon|gorge|mesa", "in a deep {}"),
    # ---- subjects: things that can be the focal point -----------------------------------
    _t("lighthouse", "subject", "lighthouse", "a {}"),
    _t("tree", "subject", "tree|oak|old tree|willow", "a lone {}"),
    _t("house", "subject", "house|cottage|cabin|hut|farmhouse", "a small {}"),
    _t("castle", "subject", "castle|fortress|palace", "an ancient {}"),
    _t("boat", "subject", "boat|sailboat|ship|yacht|canoe", "a small {}"),
    _t("birds", "subject", "birds|bird|seagulls|seagull|crows|flock of birds", "{} in flight"),
    _t("fox", "subject", "fox", "a {}"),
    _t("cat", "subject", "cat|kitten", "a {}"),
    _t("dog", "subject", "dog|puppy", "a {}"),
    _t("deer", "subject", "deer|stag", "a {}"),
    _t("wolf", "subject", "wolf", "a lone {}"),
    _t("horse", "subject", "horse|pony", "a {}"),
    _t("person", "subject", "person|figure|woman|man|girl|boy|child|traveler|wanderer|hiker", "a lone {}"),
    _t("astronaut", "subject", "astronaut|cosmonaut", "an {}"),
    _t("knight", "subject", "knight|warrior|samurai", "a {}"),
    _t("robot", "subject", "robot|android|mech", "a {}"),
    _t("dragon", "subject", "dragon", "a {}"),
    _t("whale", "subject", "whale", "a great {}"),
    _t("fish", "subject", "fish|koi", "a {}"),
    _t("owl", "subject", "owl", "an {}"),
    _t("flowers", "subject", "flowers|flower|roses|tulips|wildflowers|sunflowers", "{}"),
    _t("cherry", "subject", "cherry blossom|sakura|cherry tree", "a {} tree"),
    _t("moon", "subject", "moon|full moon|crescent moon", "a {}"),
    _t("stars", "subject", "stars|starry sky|constellations", "countless {}"),
    _t("planet", "subject", "planet|ringed planet", "a distant {}"),
    _t("windmill", "subject", "windmill", "a {}"),
    _t("tower", "subject", "tower|spire|clock tower", "a tall {}"),
    _t("temple", "subject", "temple|pagoda|shrine", "a hidden {}"),
    _t("bridge", "subject", "bridge|stone bridge", "an old {}"),
    _t("balloon", "subject", "hot air balloon|balloon", "a {}"),
    _t("car", "subject", "car|vintage car", "a {}"),
    _t("train", "subject", "train|locomotive", "a {}"),
    _t("mushroom", "subject", "mushroom|mushrooms|toadstool", "a giant {}"),
    _t("butterfly", "subject", "butterfly|butterflies", "a {}"),
    _t("campfire", "subject", "campfire|bonfire|fire", "a crackling {}"),
    _t("tent", "subject", "tent|camp", "a {}"),
    _t("statue", "subject", "statue|monument", "a weathered {}"),
    # ---- actions ------------------------------------------------------------------------
    _t("standing", "action", "standing|waiting|watching", "{} quietly"),
    _t("walking", "action", "walking|wandering|strolling", "{} slowly"),
    _t("flying", "action", "flying|soaring|floating|hovering", "{} overhead"),
    _t("sleeping", "action", "sleeping|resting|dozing", "{} peacefully"),
    _t("running", "action", "running|racing|galloping", "{} swiftly"),
    _t("sailing", "action", "sailing|drifting", "{} across the water"),
    _t("reading", "action", "reading|writing|studying", "{} a book"),
    _t("glowing", "action", "glowing|shining|illuminated", "softly {}"),
    _t("dancing", "action", "dancing|playing|jumping", "{} joyfully"),
    # ---- moods --------------------------------------------------------------------------
    _t("serene", "mood", "serene|peaceful|calm|tranquil|quiet", "a {} mood", clash="dramatic"),
    _t("mysterious", "mood", "mysterious|eerie|haunting|ominous|spooky", "a {} atmosphere", clash="joyful"),
    _t("dramatic", "mood", "dramatic|epic|majestic|grand", "a {} feeling", clash="serene"),
    _t("melancholic", "mood", "melancholic|melancholy|lonely|sad|somber|solitary", "a {} feeling", clash="joyful"),
    _t("joyful", "mood", "joyful|cheerful|happy|playful|whimsical", "a {} spirit", clash="melancholic mysterious"),
    _t("dreamy", "mood", "dreamy|dreamlike|surreal|magical|enchanted|fairytale", "a {} air"),
    _t("cozy", "mood", "cozy|snug|inviting|homely", "a {} glow"),
    _t("nostalgic", "mood", "nostalgic|wistful|romantic", "a {} tone"),
    # ---- colours (content adjectives; a palette when written as "... tones") --------------
    _t("red", "color", "red|crimson|scarlet", "{}", "tint"),
    _t("orange", "color", "orange|amber", "{}", "tint"),
    _t("yellow", "color", "yellow|gold|golden", "{}", "tint"),
    _t("green", "color", "green|emerald", "{}", "tint"),
    _t("teal", "color", "teal|turquoise|cyan", "{}", "tint"),
    _t("blue", "color", "blue|azure|cobalt|sapphire", "{}", "tint"),
    _t("purple", "color", "purple|violet|lavender", "{}", "tint"),
    _t("pink", "color", "pink|magenta|rose pink", "{}", "tint"),
    # ---- lighting -----------------------------------------------------------------------
    _t("soft", "lighting", "soft light|soft lighting|diffused light|gentle light", "{}", "light"),
    _t("cinematic", "lighting", "cinematic lighting|cinematic", "{}", "light"),
    _t("dramatic_light", "lighting", "dramatic lighting|chiaroscuro|high contrast|hard light|strong shadows", "{}", "light"),
    _t("golden", "lighting", "golden hour|golden light|warm light|sunlit", "{}", clash="night moonlight"),
    _t("bright", "lighting", "bright lighting|high key|bright|well lit", "{}", "exposure", clash="night"),
    _t("lowkey", "lighting", "low key lighting|low key|moody lighting|dim light|shadowy", "{}", "exposure", clash="day bright"),
    _t("moonlight", "lighting", "moonlight|moonlit|silver light|cool light", "{}", clash="day golden dawn sunset"),
    _t("backlit", "lighting", "backlit|backlighting|rim light|rim lighting|silhouette", "{}"),
    _t("volumetric", "lighting", "volumetric light|god rays|light rays|sunbeams|crepuscular rays", "{}"),
    _t("neon", "lighting", "neon|neon lights|neon glow|cyberpunk", "{}", clash="pastel sepia monochrome"),
    _t("studio", "lighting", "balanced exposure|even lighting|studio lighting", "{}"),
    _t("lantern", "lighting", "lantern light|candlelight|firelight", "{}"),
    # ---- composition --------------------------------------------------------------------
    _t("thirds", "composition", "rule of thirds|off center|golden ratio", "{} composition", "framing"),
    _t("centered", "composition", "centered|symmetrical|symmetry|central", "{} composition", "framing"),
    _t("wide", "composition", "wide angle|wide shot|panoramic|panorama|establishing shot", "{}", "scale"),
    _t("closeup", "composition", "close up|closeup|portrait|macro|tight framing", "{}", "scale"),
    _t("minimal", "composition", "minimalist|minimal|negative space|simple composition", "{}"),
    _t("lowangle", "composition", "low angle|worm eye view", "{} shot", "view"),
    _t("aerial", "composition", "aerial view|bird eye view|top down", "{}", "view"),
    _t("leading", "composition", "leading lines|diagonal composition", "{}"),
    # ---- palette ------------------------------------------------------------------------
    _t("vibrant", "palette", "vibrant colors|vibrant|vivid|saturated|colorful|bold colors", "{}", "scheme"),
    _t("muted", "palette", "muted tones|muted|desaturated|faded|earthy tones", "{}", "scheme"),
    _t("pastel", "palette", "pastel colors|pastel|soft pastel", "{}", "scheme"),
    _t("monochrome", "palette", "monochrome|monochromatic|black and white|grayscale|greyscale|noir", "{}", "scheme"),
    _t("sepia", "palette", "sepia|vintage|retro", "{} tones", "scheme"),
    _t("complementary", "palette", "complementary colors|teal and orange", "{}", "scheme"),
    _t("warm", "palette", "warm tones|warm palette|warm colors", "{}", "temperature"),
    _t("cool", "palette", "cool tones|cool palette|cold colors|icy", "{}", "temperature"),
    # ---- texture ------------------------------------------------------------------------
    _t("sharp", "texture", "sharp focus|highly detailed|crisp|ultra detailed|intricate details|8k|4k", "{}", "focus"),
    _t("softfocus", "texture", "soft focus|bokeh|shallow depth of field|blurry|out of focus|dreamy blur", "{}", "focus"),
    _t("grain", "texture", "film grain|grainy|analog film|35mm film", "{}"),
    _t("brush", "texture", "visible brushstrokes|brushstrokes|impasto|painterly", "{}"),
    _t("smooth", "texture", "smooth|clean|polished|glossy", "{} finish"),
    # ---- medium -------------------------------------------------------------------------
    _t("photo", "medium", "photograph|photo|photorealistic|realistic|dslr", "{}", "medium"),
    _t("digital", "medium", "digital art|digital painting|concept art|illustration", "{}", "medium"),
    _t("oil", "medium", "oil painting|oil on canvas", "{}", "medium"),
    _t("watercolor", "medium", "watercolor|watercolour|watercolor painting", "{}", "medium"),
    _t("render", "medium", "3d render|octane render|cgi|unreal engine", "{}", "medium"),
    _t("anime", "medium", "anime|cel shaded|cartoon|studio anime", "{}", "medium"),
    _t("sketch", "medium", "pencil sketch|sketch|charcoal|ink drawing|line art", "{}", "medium"),
    _t("pixel", "medium", "pixel art|8 bit|16 bit|pixelated", "{}", "medium"),
)

BY_KEY: dict[str, Term] = {t.key: t for t in TERMS}
BY_CATEGORY: dict[str, list[Term]] = {}
for _term in TERMS:
    BY_CATEGORY.setdefault(_term.category, []).append(_term)

#: Words that carry no intent of their own; they never count as the user's words.
STOPWORDS = frozenset(
    """a an the of in on at by with and or to from over under into onto near above below beneath for is are be
    its it his her their our my your some very this that these those as through across while like style image
    picture scene showing featuring made beautiful stunning amazing high quality masterpiece detailed art artwork
    view shot kind sort one two three there here which who whose what where when how than then so just more most
    tones tone colors colours palette composition finish mood atmosphere feeling spirit air glow lit light""".split()
)


# -- tokens ---------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """A crude plural-stripper, so that 'mountains' meets 'mountain' and 'cities' meets 'city'."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Lower-case words as written; hyphens and apostrophes split words ("close-up" -> close up)."""
    return _WORD.findall(text.lower().replace("'s ", " "))


def tokens(text: str) -> list[str]:
    """The stems of :func:`words`, position for position."""
    return [stem(w) for w in words(text)]


def same_word(a: str, b: str) -> bool:
    """Whether two forms are one word in different dress ("fog"/"foggy", "space"/"outer space")."""
    a, b = a.lower(), b.lower()
    if a == b:
        return True
    if len(a) >= 3 and len(b) >= 3 and (a.startswith(b) or b.startswith(a)):
        return True
    return a in b.split() or b in a.split()


def _index() -> dict[str, list[tuple[tuple[str, ...], Term, str]]]:
    index: dict[str, list[tuple[tuple[str, ...], Term, str]]] = {}
    for term in TERMS:
        for form in term.forms:
            toks = tuple(tokens(form))
            index.setdefault(toks[0], []).append((toks, term, form))
    for entries in index.values():
        entries.sort(key=lambda e: -len(e[0]))  # longest form first: "blue hour" before "blue"
    return index


_INDEX = _index()


@dataclass(frozen=True)
class Match:
    term: Term
    form: str  # the vocabulary form that matched
    start: int  # token position
    end: int


@lru_cache(maxsize=4096)
def find_terms(text: str) -> tuple[Match, ...]:
    """Every vocabulary term in ``text``, in order, longest form first, without overlaps."""
    toks = tokens(text)
    found: list[Match] = []
    i = 0
    while i < len(toks):
        for form_toks, term, form in _INDEX.get(toks[i], ()):
            n = len(form_toks)
            if tuple(toks[i : i + n]) == form_toks:
                found.append(Match(term, form, i, i + n))
                i += n
                break
        else:
            i += 1
    return tuple(found)


def literal_words(text: str) -> list[str]:
    """The words of ``text`` that are neither vocabulary terms nor stopwords (e.g. 'hat', 'giant')."""
    toks = tokens(text)
    covered: set[int] = set()
    for m in find_terms(text):
        covered.update(range(m.start, m.end))
    out: list[str] = []
    for i, t in enumerate(toks):
        if i not in covered and t not in STOPWORDS and len(t) >= 3 and not t.isdigit() and t not in out:
            out.append(t)
    return out


def keys_in(text: str) -> list[str]:
    """The distinct term keys of ``text``, first mention first."""
    seen: list[str] = []
    for m in find_terms(text):
        if m.term.key not in seen:
            seen.append(m.term.key)
    return seen


def conflicts(a: Term, b: Term) -> bool:
    """Whether two different terms contradict each other (same group, or an explicit clash)."""
    if a.key == b.key:
        return False
    if a.group is not None and a.group == b.group:
        return True
    return b.key in a.clash or a.key in b.clash


def siblings(term: Term) -> list[Term]:
    """Other terms of the same category, preferring those of the same group: what a drifting writer swaps in."""
    same = [t for t in BY_CATEGORY[term.category] if t.key != term.key]
    if term.group:
        grouped = [t for t in same if t.group == term.group]
        if grouped:
            return grouped
    return same
