#!/usr/bin/env python3
"""Writes test/fixtures/prompt-reference.json: AUTOMATIC1111's own prompt parsing, run on a corpus.

For every prompt of a corpus (hand-written, real-looking prompts and prompts built from templates)
and of a few thousand random strings, it records what A1111's code returns:

  - modules/prompt_parser.py get_learned_conditioning_prompt_schedules([p], steps)[0], steps 20 and 30
    (use_old_scheduling=False, no hires steps: the web UI's defaults);
  - modules/prompt_parser.py parse_prompt_attention(p);
  - modules/extra_networks.py parse_prompt(p) (text, and the ExtraNetworkParams per type).

A1111's files are not part of this repository. Save them from the A1111 repository (the fixture
records the commits used) into a folder, e.g. .cache/a1111/modules/{prompt_parser.py,extra_networks.py}
(.cache/ is git-ignored), and pass that folder's parent:

    python3 scripts/make_prompt_fixture.py --a1111 .cache/a1111 --lark /path/to/lark-1.1.2

prompt_parser.py imports lark and (when imported as a module) torch; extra_networks.py imports
modules.errors. torch and modules.errors are stubbed (nothing used here touches them).

A1111 pins lark==1.1.2 (requirements_versions.txt). --lark puts a lark source tree first on
sys.path (a checkout of lark-parser/lark at tag 1.1.2: `git archive 1.1.2 lark | tar -x -C DIR`),
else the installed lark is used; the fixture records the version. With lark 1.1.2 the parse lark
keeps for some ambiguous prompts depends on Python's string hashing, which is salted per process
(PYTHONHASHSEED): A1111 itself answers differently from one start to the next. So the schedules are
computed in --seeds processes with PYTHONHASHSEED=0..N-1, and every distinct answer is recorded
with how many seeds gave it. One more run fixes lark's order among tied derivations (see
fix_order): its answer, one of those A1111 can give, is the one lib/text/prompt.ts must give on
every entry. With --also-installed-lark, the schedules are also computed with the installed lark
(1.3 orders tied derivations by insertion, a fixed but text-dependent order), for information.

The committed fixture: --seeds 12 --also-installed-lark, Python 3.11.7, lark 1.1.2 and installed
lark 1.3.1; about 15 minutes on 2 cores (lark's Earley parser is slow on the longer prompts).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import types

STEPS = (20, 30)

# --------------------------------------------------------------------------------------------
# Corpus

HAND = [
    '',
    ' ',
    'a photo of a cat',
    'masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile',
    'masterpiece, best quality, (detailed face:1.2), (beautiful eyes), [blurry]',
    '((masterpiece)), (((best quality))), ultra-detailed, 8k wallpaper',
    '(((((extremely detailed)))))',
    '[[[[low quality]]]]',
    '(worst quality, low quality:1.4), (bad anatomy:1.2), extra fingers',
    '(worst quality:2), (low quality:2), (normal quality:2), lowres, bad anatomy, bad hands',
    'a (red:1.5) car on a [wet] road',
    'a (red:0.5) car',
    'a (red:-1) car',
    'a (red:+1.3) car',
    'a (red:.5) car',
    'a (red:1.) car',
    'a (red: 1.3 ) car',
    'a (red :1.3) car',
    'a (red:1.3 car',
    'a (red) (car:1.3',
    '(a (red) car:1.3)',
    '((a (red) car:1.3):0.8)',
    '[(a red car:1.3)]',
    'a [red:1.3] car',
    '(a:1.2:1.3)',
    '(a:b)',
    '(a:1e3)',
    '(a:1.2.3)',
    '(a:.)',
    '(a:+)',
    '(a:-)',
    '(a:١٫٥)',
    '(a:١.٥)',
    '(a:１.５)',
    '\\(not emphasis\\)',
    '\\[not weaker\\]',
    'a \\(b\\) c',
    'mejiro mcqueen \\(umamusume\\), 1girl',
    'backslash \\\\ in text',
    'backslash \\\\(emphasis\\\\)',
    'trailing backslash \\',
    'backslash before newline \\\nnext line',
    'escaped colon \\: and pipe \\|',
    'odd escape \\a \\b',
    '(unbalanced',
    'unbalanced)',
    '[unbalanced',
    'unbalanced]',
    '((unbalanced)',
    '(unbalanced))',
    '[[unbalanced]',
    '[unbalanced]]',
    '(a]',
    '[a)',
    '([a)]',
    '[(a])',
    ')(',
    '][',
    '()',
    '[]',
    '(:)',
    '[:]',
    ':',
    '::',
    'a:b',
    'a: 1.2',
    'time: 12:30',
    'ratio 16:9, cinematic',
    'a | b',
    '|',
    'a|b',
    'a cat BREAK a dog',
    'a cat BREAK',
    'BREAK a dog',
    'BREAK',
    'BREAKfast at tiffany',
    'a cat,BREAK,a dog',
    'a cat\nBREAK\na dog',
    'a cat BREAK BREAK a dog',
    '(a cat BREAK a dog)',
    '[a cat BREAK a dog:1.2]',
    '(a cat BREAK a dog:1.2)',
    'a cat _BREAK a dog',
    'a catBREAK a dog',
    'a cat éBREAK a dog',
    'a cat 1BREAK a dog',
    'a cat break a dog',
    'a cat\u3000BREAK\u3000a dog',
    'a cat\xa0BREAK\xa0a dog',
    'a cat\x1fBREAK a dog',
    'a cat\ufeffBREAK a dog',
    'fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]',
    'a [dog:cat:10] in a field',
    'a [dog:cat:0.5] in a field',
    'a [dog:cat:.5] in a field',
    'a [dog:cat:5.] in a field',
    'a [dog:cat:1.0] in a field',
    'a [dog:cat:1] in a field',
    'a [dog:cat:0] in a field',
    'a [dog:cat:-3] in a field',
    'a [dog:cat:-0.5] in a field',
    'a [dog:cat:25] in a field',
    'a [dog:cat:1.5] in a field',
    'a [dog:cat:99999999999999999999] in a field',
    'a [dog:cat:1e400] in a field',
    'a [dog:cat:1.5e400] in a field',
    'a [dog:-1e400] in a field',
    '[a:b:1e400]]',
    'a [dog:cat:1e1] in a field',
    'a [dog:cat:1.5e1] in a field',
    'a [dog:cat:.5e1] in a field',
    'a [dog:cat:+5] in a field',
    'a [dog:cat: 5] in a field',
    'a [dog:cat:5 ] in a field',
    'a [dog:cat: 5 ] in a field',
    'a [dog:cat:\n5\n] in a field',
    'a [dog:cat:5x] in a field',
    'a [dog:cat:x5] in a field',
    'a [dog:cat:5 6] in a field',
    'a [dog:cat:1/2] in a field',
    'a [dog : cat : 5] in a field',
    'a [dog:5] in a field',
    'a [dog::5] in a field',
    'a [:dog:5] in a field',
    'a [::5] in a field',
    'a [:5] in a field',
    'a [dog:cat:] in a field',
    'a [dog:cat:dog:5] in a field',
    'a [dog:cat] in a field',
    'a[b:[c:d:2]:1]e',
    'a [[b:c:3]:[d:e:7]:5] f',
    'a [b:[c:[d:e:9]:6]:3] f',
    'a [(red:1.3) dog:(blue:0.8) cat:0.4] in a field',
    'a [dog|cat] in a field',
    'a [dog|cat|bird] in a field',
    'a [dog|cat|] in a field',
    'a [|dog] in a field',
    'a [|] in a field',
    '[fe|]male',
    '[fe|||]male',
    'a [dog|[cat|bird]] in a field',
    'a [dog|[cat:bird:5]] in a field',
    'a [[dog|cat]:bird:5] in a field',
    'a [dog|(cat:1.2)] in a field',
    'a ([dog|cat]:1.2) in a field',
    'a [dog|cat:5] in a field',
    'a (dog|cat) in a field',
    'a dog|cat in a [field|meadow]',
    '[a:b:5]]',
    '[a:b:5]]]',
    '[[a:b:5]',
    'x] [a:b:5]',
    '[a:b:5] x]',
    '[a:b:5]((',
    '[a:b:5]:',
    '[a:b:5]):',
    '(a:[a:b:5]]',
    '[a|b]]',
    '[a|b])',
    '((masterpiece)), [dog:cat:5]))',
    'a [{b|d{:.5] c',
    '((a][:b:c [d:3]',
    '[(a:2):3]',
    'a [[[b]]:2]',
    'a [b : c : 1] d',
    'a [unbalanced',
    'a [b: 3]',
    '<lora:add_detail:0.7>, a portrait',
    'a portrait <lora:add_detail:0.7> <lora:epiNoiseoffset_v2:1.2>',
    'a portrait <lora:add_detail>',
    'a portrait <lora:add_detail:0.5:0.8>',
    'a portrait <lora:add_detail:te=0.5:unet=1.5>',
    'a portrait <lora:add_detail:0.5:unet=1.2:dyn=8>',
    'a portrait <lora:add_detail: 0.5 >',
    'a portrait <lora:add_detail:1_0>',
    'a portrait <lora:add_detail:inf>',
    'a portrait <lora:add_detail:-Infinity>',
    'a portrait <lora:add_detail:nan>',
    'a portrait <lora:add_detail:abc>',
    'a portrait <lora:add_detail:١٫٥>',
    'a portrait <lora:add_detail:١.٥>',
    'a portrait <lora:add_detail:0x10>',
    'a portrait <lora:add_detail:1e3>',
    'a portrait <lora:add_detail:.5>',
    'a portrait <lora:add_detail:>',
    'a portrait <lora::0.5>',
    'a portrait <lora:>',
    'a portrait <:x:0.5>',
    'a portrait <lora:a=b=c:0.5>',
    'a portrait <lora:te=1:0.5>',
    'a portrait <lora:name with spaces:0.8>',
    'a portrait <lora:日本語:0.8>',
    'a portrait <LoRA:Mixed_Case-name.v2:0.8>',
    'a portrait <lyco:some_lycoris:0.6>',
    'a portrait <hypernet:anime_3:0.5>',
    'a portrait <lora:a:0.5><lora:b:0.5>',
    'a portrait <lora:a:0.5> <hypernet:h:1> <lora:b:0.25>',
    'a portrait <lora:a<b:0.5>',
    'a portrait <lora:a:0.5',
    'a portrait lora:a:0.5>',
    'a portrait <lora a:0.5>',
    'a portrait <lo-ra:a:0.5>',
    'a portrait <ló_ra:a:0.5>',
    'a portrait <lora:a\n:0.5>',
    '[<lora:a:1>|b]',
    '(<lora:a:1>:1.2)',
    '[<lora:a:1>:b:5]',
    'a photo, embedding:EasyNegative, (bad-hands-5:1.2)',
    'EasyNegative, badhandv4, ng_deepnegative_v1_75t, (worst quality:1.4)',
    '(easynegative:0.8), verybadimagenegative_v1.3',
    'photo of 日本の猫, 桜, (富士山:1.2)',
    '猫 [犬|狐] (可愛い:1.1)',
    'émile zola, café, crème brûlée',
    'emoji 😀 (🐱:1.2) [🐶|🦊]',
    'greek Σίσυφος, russian кот',
    'arabic قطة (١:1.2)',
    'zero\u200bwidth space',
    'tab\tseparated\tprompt',
    'multi\nline\nprompt',
    'windows\r\nline endings',
    'a, b,, c, , d',
    ',,,,',
    'a very long prompt ' + ', '.join('tag%d' % i for i in range(80)),
    '(' * 50 + 'deep' + ')' * 50,
    '[' * 50 + 'deep' + ']' * 50,
    '(' * 60 + 'unclosed',
    'closing' + ')' * 60,
    '[[[[[[[[[[a:b:5]]]]]]]]]]',
    '((((((((((a:1.1))))))))))',
    '(a:1.1)' * 30,
    '[a|b]' * 10,
    '[a:b:3]' * 10,
    'score_9, score_8_up, score_7_up, source_anime, rating_safe',
    'photo of a woman, (freckles:0.8), [[[smile]]], (looking at viewer:1.1), bokeh, 85mm',
    'cinematic still of a (cyberpunk:1.3) city at night, neon lights, rain, reflections, (volumetric lighting)',
    'oil painting of a [castle:ruins:0.6] on a hill, (golden hour:1.2), by greg rutkowski',
    'portrait of [Emma Watson|Natalie Portman|Keira Knightley], elegant, highly detailed',
    'a [red|blue|green] sports car, studio lighting',
    '[photorealistic:anime:0.3] girl with [long:short:10] hair',
    '(masterpiece:1.2), (best quality:1.2), 1boy, [armor:robe:0.4], fantasy, <lora:fantasy_v1:0.6>',
    'landscape, mountains, lake, [summer:winter:15], [day:night:0.7]',
    'a dog BREAK (a cat:1.3) BREAK [a bird]',
    'interior of a cozy cabin, fireplace, (warm light:1.1) BREAK snow outside the window',
    '(((1girl))), ((solo)), (blonde hair:1.1), (blue eyes), [smile], school uniform, cherry blossoms',
    'negative: (worst quality, low quality:1.4), (monochrome), (grayscale), (text, watermark:1.2)',
    'food photography, [pizza|burger], top view, (shallow depth of field:1.2)',
    'an astronaut riding a horse on mars, artstation, hd, dramatic lighting, detailed',
    'vaporwave aesthetic, (sunset:1.3), palm trees, [retro car::0.5], grid',
    'a cute (corgi:1.2) wearing a [hat:crown:12], 4k',
    '1girl, (kimono:1.1), [red|white] kimono, \\(fate\\), umbrella',
    'photo of a man (30 years old:1.1), [beard:0.5], stubble',
    'the word "hello" written in (neon:1.3) letters',
    "a cat's toy, children's book illustration",
    'price tag: $9.99 (sale:1.2)',
    'ratio [16:9:5]',
    'time [10:30]',
    'score [5:10]',
    'an image, [1:2:3]',
    '[a:b:c:d]',
    '[a:b:3:4]',
    '[[a:b:3]:4]',
    '[a:[b:3]:4]',
    '(a:[b:c:3])',
    '([b:c:3]:1.2)',
    '[a|b:c]',
    '[a:b|c:3]',
    '[a|b|c|d|e|f|g]',
    '[a:b:3] [c|d] (e:1.2) [f] \\(g\\) BREAK h <lora:i:0.5>',
]

SUBJECTS = ['a cat', '1girl', 'a red car', 'an old man', 'a castle', 'a bowl of fruit', 'a robot', 'a forest']
STYLES = ['oil painting', 'photo', 'anime style', 'watercolor', 'pixel art', '3d render']
EXTRAS = ['masterpiece', 'best quality', 'highly detailed', 'sharp focus', 'bokeh', 'dramatic lighting']
WEIGHTS = ['1.2', '0.8', '1.5', '.9', '1', '2', '0.25']
WHENS = ['5', '10', '0.3', '0.5', '.75', '15', '1', '0']
LORAS = ['add_detail', 'epiNoise', 'style_v2', 'detail-tweaker', 'ghibli']


def templated(rng, count):
    out = []
    forms = [
        lambda: f'{rng.choice(STYLES)} of {rng.choice(SUBJECTS)}, ({rng.choice(EXTRAS)}:{rng.choice(WEIGHTS)})',
        lambda: f'{rng.choice(SUBJECTS)}, [{rng.choice(STYLES)}:{rng.choice(STYLES)}:{rng.choice(WHENS)}], {rng.choice(EXTRAS)}',
        lambda: f'[{rng.choice(SUBJECTS)}|{rng.choice(SUBJECTS)}], {rng.choice(STYLES)}',
        lambda: f'(({rng.choice(EXTRAS)})), {rng.choice(SUBJECTS)} <lora:{rng.choice(LORAS)}:{rng.choice(WEIGHTS)}>',
        lambda: f'{rng.choice(SUBJECTS)} BREAK {rng.choice(STYLES)}, [{rng.choice(EXTRAS)}]',
        lambda: f'{rng.choice(SUBJECTS)}, [{rng.choice(EXTRAS)}::{rng.choice(WHENS)}], [{rng.choice(EXTRAS)}:{rng.choice(WHENS)}]',
        lambda: f'{rng.choice(SUBJECTS)} in [{rng.choice(STYLES)}:[{rng.choice(STYLES)}:{rng.choice(STYLES)}:{rng.choice(WHENS)}]:{rng.choice(WHENS)}]',
        lambda: f'({rng.choice(SUBJECTS)}:{rng.choice(WEIGHTS)}), ({rng.choice(EXTRAS)}, {rng.choice(EXTRAS)}:{rng.choice(WEIGHTS)}), [[{rng.choice(STYLES)}]]',
        lambda: f'{rng.choice(SUBJECTS)}, ({rng.choice(STYLES)}' + rng.choice(['', ')', '))', ']', ':1.2']),
        lambda: f'[{rng.choice(SUBJECTS)}|({rng.choice(STYLES)}:{rng.choice(WEIGHTS)})|] {rng.choice(EXTRAS)}',
        lambda: f'{rng.choice(SUBJECTS)} \\({rng.choice(STYLES)}\\), [{rng.choice(EXTRAS)}:{rng.choice(EXTRAS)}:{rng.choice(WHENS)}]',
        lambda: f'<lora:{rng.choice(LORAS)}:{rng.choice(WEIGHTS)}> {rng.choice(SUBJECTS)} <hypernet:{rng.choice(LORAS)}:{rng.choice(WEIGHTS)}>',
    ]
    seen = set(HAND)
    while len(out) < count:
        p = rng.choice(forms)()
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


FUZZ_ATOMS = (
    ['(', ')', '[', ']', ':', '\\', '<', '>'] * 4 + ['|'] * 2
    + list('0123456789') + ['.', '-', '+', ' ', ' ', ' ', ',', '=', 'e', '_', '\n', '\t']
    + ['BREAK', ' BREAK ', 'cat', 'a', 'red', '1girl', 'lora', 'lora:', '<lora:x:0.5>', '1.2', ':0.5', ':5']
    + ['é', '日本', '😀', '\u3000', '\xa0', '\u0663', '１', '\x1f', '\ufeff', '\u2028', 'ß', '\r', '\x85']
)


def fuzz_soup(rng, count):
    return [''.join(rng.choice(FUZZ_ATOMS) for _ in range(rng.randint(0, 24))) for _ in range(count)]


def fuzz_grammar(rng, count):
    words = ['a', 'cat', 'red dog', ' ', 'x', '1girl', '日本', '\\(', '\\]', 'BREAK', '', ',']

    def gen(depth):
        if depth > 4 or rng.random() < 0.3:
            return rng.choice(words)
        r = rng.random()
        inner = lambda: gen(depth + 1)
        seq = lambda: ''.join(inner() for _ in range(rng.randint(0, 3)))
        if r < 0.15:
            return f'({seq()})'
        if r < 0.3:
            return f'({seq()}:{rng.choice(WEIGHTS + ["x", "", " 1.1 "])})'
        if r < 0.4:
            return f'[{seq()}]'
        if r < 0.6:
            ws = rng.choice(['', ' ', '  '])
            return f'[{seq()}:{seq()}:{ws}{rng.choice(WHENS + ["3", "1.5", "-2", "x"])}{rng.choice(["", " "])}]'
        if r < 0.7:
            return f'[{seq()}:{rng.choice(WHENS)}]'
        if r < 0.85:
            return '[' + '|'.join(seq() for _ in range(rng.randint(2, 4))) + ']'
        return seq()

    out = []
    while len(out) < count:
        p = ''.join(gen(0) for _ in range(rng.randint(1, 4)))
        for _ in range(rng.choice([0, 0, 1, 1, 2])):  # corrupt: insert or delete a syntax character
            pos = rng.randint(0, len(p))
            if rng.random() < 0.5 or not p:
                p = p[:pos] + rng.choice('()[]:|\\') + p[pos:]
            else:
                p = p[:pos] + p[pos + 1:]
        if len(p) <= 60:
            out.append(p)
    return out


def fuzz_tags(rng, count):
    names = ['x', 'add_detail', '日本', 'a b', '', 'a=b', 'te=1']
    mults = ['0.5', ' 0.5 ', '1_0', '1__0', '_1', 'inf', '-INF', 'nan', 'abc', '', '١', '١٫٥', '1e3', '0x10', '-.5', '5.', '+1', '1 2', '\u30001\u3000']
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 3)):
            args = ':'.join([rng.choice(names)] + [rng.choice(mults + ['te=0.5', 'unet=2', 'dyn=4']) for _ in range(rng.randint(0, 3))])
            parts.append(rng.choice(['', 'a cat ', ', ', '(', '[']) + f'<{rng.choice(["lora", "hypernet", "lyco", "x_1", "é"])}:{args}>')
        out.append(''.join(parts))
    return out


def corpus_and_fuzz():
    rng = random.Random(20240601)
    corpus = HAND + templated(rng, 160)
    fuzz = fuzz_soup(rng, 1500) + fuzz_grammar(rng, 1500) + fuzz_tags(rng, 300)
    entries, seen = [], set()
    for src, prompts in (('corpus', corpus), ('fuzz', fuzz)):
        for p in prompts:
            if p not in seen:
                seen.add(p)
                entries.append((src, p))
    return entries

# --------------------------------------------------------------------------------------------
# Running A1111's code


def import_a1111(a1111_dir, lark_dir):
    if lark_dir:
        sys.path.insert(0, os.path.abspath(lark_dir))
    sys.modules['torch'] = types.ModuleType('torch')  # prompt_parser.py imports it at the end
    errors = types.ModuleType('modules.errors')
    errors.display = lambda *a, **k: None
    sys.path.insert(0, os.path.abspath(a1111_dir))
    import modules  # noqa: F401  (the folder, as a namespace package)
    sys.modules['modules.errors'] = errors
    modules.errors = errors
    from modules import prompt_parser, extra_networks
    import lark
    return prompt_parser, extra_networks, lark.__version__


def weight(w):
    return w if w == w and abs(w) != float('inf') else repr(w)  # JSON has no inf/nan


def py_float(s):
    try:
        return weight(float(s))
    except ValueError:
        return None


def schedules(pp, prompt):
    out = {}
    for steps in STEPS:
        try:
            out[steps] = [[t, text] for t, text in pp.get_learned_conditioning_prompt_schedules([prompt], steps)[0]]
        except Exception as e:  # A1111 does not catch these either
            out[steps] = {'error': type(e).__name__}
    return out


def fix_order():
    """Makes lark's choice among equally ranked derivations independent of hash(): latest split first.

    lark resolves an ambiguity by sorting a forest node's derivations on (is_empty, -priority,
    rule.order) and keeping the first; derivations that tie keep the order of a Python set, i.e. of
    their hashes, which Python salts per process. This adds a last key: the start of the
    derivation's right-hand child, latest first (of the ways to end a span, the one whose last piece
    is shortest). Every order of tied derivations is one A1111 can produce; this one is the order
    lib/text/prompt.ts implements.
    """
    from lark.parsers import earley_forest as ef

    def sort_key(self):
        r = self.right
        if isinstance(r, ef.SymbolNode):
            start = r.start
        elif isinstance(r, ef.TokenNode):
            start = r.token.start_pos
        else:
            start = -1
        return self.is_empty, -self.priority, self.rule.order, -start

    ef.PackedNode.sort_key = property(sort_key)


def worker(args):
    pp, en, version = import_a1111(args.a1111, args.lark if not args.installed_lark else None)
    if args.fixed_order:
        fix_order()
    prompts = json.load(open(args.worker_in, encoding='utf8'))
    result = {'lark': version, 'schedules': [], 'attention': [], 'extra': []}
    for p in prompts:
        result['schedules'].append(schedules(pp, p))
        if args.full:
            try:
                result['attention'].append([[t, weight(w)] for t, w in pp.parse_prompt_attention(p)])
            except Exception as e:
                result['attention'].append({'error': type(e).__name__})
            text, nets = en.parse_prompt(p)
            result['extra'].append({
                'text': text,
                'nets': [[kind, [{'items': params.items, 'positional': params.positional, 'named': params.named,
                                  'float1': py_float(params.positional[1]) if len(params.positional) > 1 else 1.0}
                                 for params in plist]] for kind, plist in nets.items()],
            })
    json.dump(result, open(args.worker_out, 'w', encoding='utf8'), ensure_ascii=False)


def run_worker(args, prompts_file, run):
    seed, kind = run
    out = tempfile.NamedTemporaryFile(suffix='.json', delete=False).name
    cmd = [sys.executable, __file__, '--a1111', args.a1111, '--worker-in', prompts_file, '--worker-out', out]
    if args.lark:
        cmd += ['--lark', args.lark]
    if kind == 'seed' and seed == 0:
        cmd.append('--full')
    if kind == 'installed':
        cmd.append('--installed-lark')
    if kind == 'fixed':
        cmd.append('--fixed-order')
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    return subprocess.Popen(cmd, env=env), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--a1111', required=True, help='folder holding modules/prompt_parser.py and modules/extra_networks.py')
    ap.add_argument('--lark', help='lark source tree (1.1.2) to import instead of the installed one')
    ap.add_argument('--seeds', type=int, default=12, help='PYTHONHASHSEED values 0..N-1 (default 12)')
    ap.add_argument('--jobs', type=int, default=2)
    ap.add_argument('--also-installed-lark', action='store_true')
    ap.add_argument('--prompt-parser-commit', default='28bd8e142d5f77b71ae8d7d7140b5da1b3a49906')
    ap.add_argument('--extra-networks-commit', default='0a277ab59183df638650d8373d785c94d14634ed')
    ap.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'prompt-reference.json'))
    ap.add_argument('--worker-in')
    ap.add_argument('--worker-out')
    ap.add_argument('--full', action='store_true')
    ap.add_argument('--installed-lark', action='store_true')
    ap.add_argument('--fixed-order', action='store_true')
    args = ap.parse_args()
    if args.worker_in:
        return worker(args)

    entries = corpus_and_fuzz()
    prompts = [p for _, p in entries]
    prompts_file = tempfile.NamedTemporaryFile(suffix='.json', delete=False, mode='w', encoding='utf8')
    json.dump(prompts, prompts_file, ensure_ascii=False)
    prompts_file.close()

    runs = [(seed, 'seed') for seed in range(args.seeds)] + [(0, 'fixed')]
    if args.also_installed_lark:
        runs.append((0, 'installed'))
    results, pending = {}, list(runs)
    while pending:
        batch, pending = pending[:args.jobs], pending[args.jobs:]
        procs = [(run, run_worker(args, prompts_file.name, run)) for run in batch]
        for run, (proc, out) in procs:
            if proc.wait() != 0:
                sys.exit(f'worker {run} failed')
            results[run] = json.load(open(out, encoding='utf8'))
            os.unlink(out)
        print(f'{len(results)}/{len(runs)} runs', file=sys.stderr)
    os.unlink(prompts_file.name)

    full = results[(0, 'seed')]
    seed_runs = [results[run] for run in runs if run[1] == 'seed']
    fixed = results[(0, 'fixed')]
    installed = results.get((0, 'installed'))
    out_entries = []
    nondeterministic = 0
    for i, (src, p) in enumerate(entries):
        texts, index = [], {}

        def encode(sched):
            if isinstance(sched, dict):
                return sched
            pairs = []
            for t, text in sched:
                if text not in index:
                    index[text] = len(texts)
                    texts.append(text)
                pairs.append([t, index[text]])
            return pairs

        e = {'p': p, 'src': src}
        varied = False
        for steps in STEPS:
            key = str(steps)
            answers, counts = [], []

            def answer(a):
                if a not in answers:
                    answers.append(a)
                    counts.append(0)
                return answers.index(a)

            for r in seed_runs:
                counts[answer(r['schedules'][i][key])] += 1
            r_fixed = answer(fixed['schedules'][i][key])
            m_installed = answer(installed['schedules'][i][key]) if installed else 0
            varied |= sum(1 for c in counts if c) > 1
            e[f's{steps}'] = [encode(a) for a in answers]
            if counts != [len(seed_runs)]:
                e[f'n{steps}'] = counts
            if r_fixed:
                e[f'r{steps}'] = r_fixed
            if m_installed:
                e[f'm{steps}'] = m_installed
        nondeterministic += varied
        e['texts'] = texts
        e['att'] = full['attention'][i]
        ex = full['extra'][i]
        if ex['nets'] or ex['text'] != p:
            e['en'] = ex
        out_entries.append(e)

    fixture = {
        'about': 'AUTOMATIC1111 prompt parsing outputs, made by scripts/make_prompt_fixture.py. s20/s30: the distinct '
                 'answers of get_learned_conditioning_prompt_schedules([p], 20|30)[0] ([step, index into texts] '
                 'pairs, or {error: Python exception name}); n20/n30: how many of the PYTHONHASHSEED runs gave each '
                 '(omitted when all gave s[0]); r20/r30: index of the answer with lark\'s tie order fixed '
                 '(latest split first; omitted when 0); m20/m30: index of the installed lark\'s answer (omitted when '
                 '0); att: parse_prompt_attention(p) (weights inf/nan as strings), or {error}; en: '
                 'extra_networks.parse_prompt(p) (float1: Python float(positional[1]), null on ValueError), '
                 'omitted when it changes nothing.',
        'a1111': {
            'repository': 'AUTOMATIC1111/stable-diffusion-webui',
            'modules/prompt_parser.py': args.prompt_parser_commit,
            'modules/extra_networks.py': args.extra_networks_commit,
        },
        'lark': full['lark'],
        'installed_lark': installed['lark'] if installed else None,
        'python': sys.version.split()[0],
        'seeds': args.seeds,
        'steps': list(STEPS),
        'counts': {'corpus': sum(1 for s, _ in entries if s == 'corpus'), 'fuzz': sum(1 for s, _ in entries if s == 'fuzz'),
                   'nondeterministic': nondeterministic},
        'entries': out_entries,
    }
    with open(args.out, 'w', encoding='utf8') as f:
        json.dump(fixture, f, ensure_ascii=False, separators=(',', ':'))
        f.write('\n')
    print(f'{args.out}: {len(out_entries)} entries ({fixture["counts"]}), lark {full["lark"]}', file=sys.stderr)


if __name__ == '__main__':
    main()
