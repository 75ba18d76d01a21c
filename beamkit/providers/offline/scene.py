"""From a prompt to a scene description: which sky, which ground, which subjects, which styles.

Rules that decide between contradicting words live here, so that the painter only paints:
within one group (time of day, medium, palette scheme, framing, ...) the first word
mentioned wins and the later ones are ignored, exactly like a reader who takes the first
instruction seriously. A colour word right before a subject colours that subject
("a red fox"); anywhere else it tints the whole picture ("red tones").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .vocab import find_terms

MAX_TOKENS = 77

#: Subjects that live in the sky rather than on the ground.
SKY_SUBJECTS = frozenset({"birds", "dragon", "balloon", "moon", "planet", "butterfly", "stars"})
#: Subjects that are drawn on water when there is water.
WATER_SUBJECTS = frozenset({"boat", "whale", "fish"})


@dataclass
class Scene:
    keys: list[str] = field(default_factory=list)
    time: str = "day"
    settings: list[str] = field(default_factory=list)
    subjects: list[tuple[str, str | None]] = field(default_factory=list)  # (subject key, colour key or None)
    weather: set[str] = field(default_factory=set)
    season: str | None = None
    moods: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)
    light: str | None = None  # soft / cinematic / dramatic_light
    exposure: str | None = None  # bright / lowkey
    lights: set[str] = field(default_factory=set)  # golden, moonlight, backlit, volumetric, neon, studio, lantern
    framing: str | None = None  # thirds / centered
    scale: str | None = None  # wide / closeup
    view: str | None = None  # lowangle / aerial
    minimal: bool = False
    leading: bool = False
    scheme: str | None = None  # vibrant / muted / pastel / monochrome / sepia / complementary
    temperature: str | None = None  # warm / cool
    tints: list[str] = field(default_factory=list)
    focus: str | None = None  # sharp / softfocus
    textures: set[str] = field(default_factory=set)  # grain, brush, smooth
    medium: str | None = None


_FIRST_WINS = {
    "time": "time",
    "season": "season",
    "light": "light",
    "exposure": "exposure",
    "framing": "framing",
    "scale": "scale",
    "view": "view",
    "scheme": "scheme",
    "temperature": "temperature",
    "focus": "focus",
    "medium": "medium",
}


def parse(prompt: str) -> Scene:
    s = Scene()
    # like the text encoders of real models, the painter reads only the first 77 words
    matches = tuple(m for m in find_terms(prompt) if m.end <= MAX_TOKENS)
    taken: dict[str, str] = {}
    for i, m in enumerate(matches):
        t = m.term
        if t.key not in s.keys:
            s.keys.append(t.key)
        if t.group in _FIRST_WINS and t.group not in taken:
            taken[t.group] = t.key
        cat = t.category
        if cat == "setting" and t.key not in s.settings:
            s.settings.append(t.key)
        elif cat == "subject" and t.key not in [k for k, _ in s.subjects]:
            s.subjects.append((t.key, None))
        elif cat == "weather":
            s.weather.add(t.key)
        elif cat == "mood":
            s.moods.add(t.key)
        elif cat == "action":
            s.actions.add(t.key)
        elif cat == "color":
            nxt = matches[i + 1] if i + 1 < len(matches) else None
            if nxt is not None and nxt.term.category == "subject" and nxt.start - m.end <= 1:
                if nxt.term.key not in [k for k, _ in s.subjects]:
                    s.subjects.append((nxt.term.key, t.key))
            elif t.key not in s.tints:
                s.tints.append(t.key)
        elif cat == "lighting" and t.group is None:
            s.lights.add(t.key)
        elif cat == "composition":
            if t.key == "minimal":
                s.minimal = True
            elif t.key == "leading":
                s.leading = True
        elif cat == "texture" and t.group is None:
            s.textures.add(t.key)
    s.time = taken.get("time", "day")
    s.season = taken.get("season")
    s.light = taken.get("light")
    s.exposure = taken.get("exposure")
    s.framing = taken.get("framing")
    s.scale = taken.get("scale")
    s.view = taken.get("view")
    s.scheme = taken.get("scheme")
    s.temperature = taken.get("temperature")
    s.focus = taken.get("focus")
    s.medium = taken.get("medium")
    if s.season == "winter":
        s.weather.add("snow_ground")
    if "snow" in s.weather:
        s.weather.add("snow_ground")
    return s
