"""Deterministic synthetic text corpora for model verification and benchmarks.

Everything is generated from word lists and templates in this file with a seeded
`random.Random`, so the same (n, seed) always yields the same texts on any
machine and Python version (>= 3.2, where `Random` seeding of ints is stable).
No files, network or tokenizer are needed, so Rust-side benchmarks can reuse the
exact same corpus by dumping it one text per line:
`python scripts/sentences.py 2000 > s.txt`, `python scripts/sentences.py 500 passages`.
"""

import random
import re
import sys

_TOPICS = {
    "tech": (
        "server database compiler kernel thread memory cache network packet "
        "latency throughput benchmark tokenizer embedding vector index query "
        "cluster container runtime library binary checksum protocol socket "
        "encryption certificate firmware processor allocator scheduler"
    ),
    "nature": (
        "river mountain forest meadow glacier canyon desert ocean island "
        "volcano rainfall sunlight wildflower eagle salmon wolf pine oak moss "
        "tide storm valley lake coral reef thunder breeze"
    ),
    "food": (
        "bread cheese tomato garlic pasta soup curry noodles dumpling pepper "
        "lemon honey butter rice lentils chocolate coffee tea recipe oven "
        "kitchen spice broth pastry salad sauce"
    ),
    "finance": (
        "market stock bond dividend inflation interest rate loan mortgage "
        "budget revenue profit invoice currency exchange portfolio audit tax "
        "quarter forecast earnings liquidity deficit"
    ),
    "sports": (
        "match goal referee stadium league season coach striker defender "
        "marathon sprint tournament medal record championship racket bicycle "
        "swimmer keeper penalty halftime"
    ),
    "health": (
        "doctor patient clinic vaccine symptom therapy nutrition sleep "
        "exercise diagnosis hospital nurse medicine dosage allergy recovery "
        "heartbeat muscle vitamin"
    ),
    "travel": (
        "airport passport luggage hotel ticket train station harbor museum "
        "cathedral market bridge map guide journey border visa hostel ferry"
    ),
}

_ADJECTIVES = (
    "quick slow bright dark quiet loud ancient modern small huge fragile "
    "robust cheap expensive strange familiar efficient noisy careful lazy "
    "remote local hidden obvious fresh stale"
).split()

_VERBS = (
    "builds breaks finds moves opens closes measures improves reduces "
    "explains ignores tracks shares stores compares loads writes reads "
    "follows replaces describes"
).split()

_NAMES = (
    "Alice Bob Chen Dmitri Elena Fatima Giulia Hiroshi Ingrid Jamal Kofi "
    "Lucía Mateo Nadia Olufemi Priya Quentin Rosa Sven Tomás"
).split()

_PLACES = (
    "Berlin Lagos Kyoto Lima Oslo Nairobi Montréal Hanoi Porto Zürich "
    "Melbourne Reykjavík Seoul Cairo Valparaíso"
).split()

# A sprinkling of non-English words (with accents and non-Latin scripts) so the
# corpus exercises the tokenizer's normalization and [UNK]/sub-word paths.
_FOREIGN = (
    "bonjour merci café naïve façade über Straße Gemütlichkeit mañana "
    "niño corazón saudade obrigado grazie spaghetti prego smörgåsbord "
    "fjord tschüss こんにちは 東京 привет спасибо γειά שלום مرحبا नमस्ते 你好"
).split()

_CONNECTORS = (
    "and but because although while so however meanwhile therefore "
    "besides then"
).split()

_UNITS = "km kg ms GB MB % °C USD EUR items users requests".split()

# Templates start lower-case unless they start with a proper noun; `_text`
# capitalizes them at the start of a sentence.
_TEMPLATES = (
    "the {adj} {noun} {verb} the {noun2}",
    "{name} {verb} a {adj} {noun} in {place}",
    "why does the {noun} {verb_base} the {noun2} so {adv}?",
    "in {year}, {name} measured {num} {unit} of {noun}",
    "{name} said: \"the {noun} is {adj}, not {adj2}\"",
    "version {ver} of the {noun} {verb} {num} {noun2}s per second",
    "{adj} {noun}; {adj2} {noun2} - {foreign}!",
    "note ({num}/{num2}): the {noun} near {place} {verb} the {noun2}",
    "{foreign}, {name}! The {noun} costs {num}.{num2} {unit}",
    "check https://example.com/{noun}/{num} before the {noun2} {verb_base}s",
)

_ADVERBS = "quickly slowly rarely often badly well quietly suddenly".split()


def _fill(rng, topic_words):
    """Fill one random template with words mostly drawn from one topic."""
    def noun():
        # Mostly on-topic, occasionally off-topic, so sentences are not too
        # uniform within a topic.
        if rng.random() < 0.85:
            return rng.choice(topic_words)
        return rng.choice(rng.choice(list(_TOPICS.values())).split())

    verb = rng.choice(_VERBS)
    return rng.choice(_TEMPLATES).format(
        adj=rng.choice(_ADJECTIVES),
        adj2=rng.choice(_ADJECTIVES),
        noun=noun(),
        noun2=noun(),
        verb=verb,
        verb_base=verb[:-1] if verb.endswith("s") else verb,
        adv=rng.choice(_ADVERBS),
        name=rng.choice(_NAMES),
        place=rng.choice(_PLACES),
        year=rng.randint(1850, 2030),
        num=rng.randint(0, 99999),
        num2=rng.randint(0, 99),
        unit=rng.choice(_UNITS),
        ver="%d.%d.%d" % (rng.randint(0, 9), rng.randint(0, 30), rng.randint(0, 99)),
        foreign=rng.choice(_FOREIGN),
    )


def _capitalize(text):
    return text[0].upper() + text[1:]


def _text(rng, n_words):
    """Join template clauses until n_words words, then cut to exactly n_words."""
    topic_words = rng.choice(list(_TOPICS.values())).split()
    words = []
    while len(words) < n_words:
        clause = _fill(rng, topic_words).split()
        if not words:
            clause[0] = _capitalize(clause[0])
        elif rng.random() < 0.6:
            # Chain clauses with a connector...
            words.append(rng.choice(_CONNECTORS))
        else:
            # ...or start a new sentence.
            if words[-1][-1] not in ".!?\"":
                words[-1] += "."
            clause[0] = _capitalize(clause[0])
        words.extend(clause)
    text = " ".join(words[:n_words])
    if text[-1] not in ".!?":
        text += rng.choice(".!?.")
    return text


def sentences(n=1000, seed=1234):
    """n varied texts of 3..120 words, skewed towards short ones like real queries."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        # Half short (3..20 words), the rest spread up to 120 words so padding
        # to the longest in a batch is realistically wasteful.
        if rng.random() < 0.5:
            n_words = rng.randint(3, 20)
        else:
            n_words = rng.randint(21, 120)
        out.append(_text(rng, n_words))
    return out


# Expected BERT WordPiece token count, with per-word averages measured once
# on this corpus with all-MiniLM-L6-v2's tokenizer (punctuation is one token
# per char, 5-digit numbers split in ~3 pieces, accented/non-Latin words in
# ~2). Good to a few %, which is all `passages` needs; it keeps this module
# tokenizer-free.
def _approx_tokens(text):
    count = 0.0
    for run in re.findall(r"\w+|[^\w\s]", text):
        if run.isdigit():
            count += (1.0, 1.0, 1.0, 1.6, 1.35, 2.8)[min(len(run), 5)]
        elif not run.isascii():
            count += 2.0
        elif run.isalpha() and len(run) >= 7:
            count += 1.17
        else:
            count += 1.0
    return count


def passages(n=500, seed=99, target_tokens=200):
    """n passages of about target_tokens tokens each (incl. [CLS]/[SEP])."""
    rng = random.Random(seed)
    budget = target_tokens - 2
    out = []
    for _ in range(n):
        words = []
        while True:
            words.extend(_text(rng, rng.randint(8, 30)).split())
            if _approx_tokens(" ".join(words)) >= budget:
                break
        # Trim back word by word to land on the budget rather than overshoot
        # by a whole sentence.
        while _approx_tokens(" ".join(words[:-1])) >= budget:
            words.pop()
        out.append(" ".join(words))
    return out


if __name__ == "__main__":
    # Dump a corpus one text per line (texts never contain newlines).
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    kind = sys.argv[2] if len(sys.argv) > 2 else "sentences"
    for line in (passages(count) if kind == "passages" else sentences(count)):
        print(line)
