// AUTOMATIC1111 prompt syntax (lib/text/prompt.ts) against A1111's own code: the fixture
// test/fixtures/prompt-reference.json holds what modules/prompt_parser.py and
// modules/extra_networks.py return (lark 1.1.2, as A1111 pins it) for a corpus of prompts and
// random strings; scripts/make_prompt_fixture.py made it. No Python or network here.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  extractExtraNetworks,
  MAX_SCHEDULE_STEPS,
  parseAttention,
  promptSchedule,
  type ExtraNetwork,
} from '../lib/text/prompt';

type PyError = { error: string };
type Pairs = Array<[number, number]>;
type Weight = number | string; // "inf", "-inf", "nan" for the non-finite ones
interface Params {
  items: string[];
  positional: string[];
  named: Record<string, string>;
  float1: Weight | null;
}
interface Entry {
  p: string;
  src: 'corpus' | 'fuzz';
  texts: string[];
  s20: Array<Pairs | PyError>;
  s30: Array<Pairs | PyError>;
  n20?: number[];
  n30?: number[];
  r20?: number;
  r30?: number;
  m20?: number;
  m30?: number;
  att: Array<[string, Weight]> | PyError;
  en?: { text: string; nets: Array<[string, Params[]]> };
}
interface Fixture {
  lark: string;
  installed_lark: string | null;
  seeds: number;
  steps: number[];
  entries: Entry[];
}

const fixture = JSON.parse(
  fs.readFileSync(path.join(__dirname, 'fixtures', 'prompt-reference.json'), 'utf8'),
) as Fixture;
const entries = fixture.entries;
const corpus = entries.filter((e) => e.src === 'corpus').length;
const fuzz = entries.length - corpus;

function weightOf(w: Weight): number {
  if (typeof w === 'number') return w;
  return ({ inf: Infinity, '-inf': -Infinity, nan: NaN } as Record<string, number>)[w];
}

function sameWeight(a: number, b: number): boolean {
  return Object.is(a, b) || Math.abs(a - b) <= 1e-9 || (Number.isNaN(a) && Number.isNaN(b));
}

function isPyError(x: unknown): x is PyError {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && 'error' in x;
}

type Outcome = Array<[number, string]> | { thrown: string };

function attempt<R>(f: () => R): R | { thrown: string } {
  try {
    return f();
  } catch (e) {
    assert.ok(e instanceof Error, `threw a non-Error: ${String(e)}`);
    assert.ok(e.message.length > 0, 'threw an Error without a message');
    return { thrown: e.message };
  }
}

// A1111 raised a Python exception: ours must throw an Error naming it.
function matches(ours: Outcome, ref: Pairs | PyError, texts: string[]): boolean {
  if (isPyError(ref)) return 'thrown' in ours && ours.thrown.includes(ref.error);
  if ('thrown' in ours) return false;
  return ours.length === ref.length && ref.every(([t, i], k) => ours[k][0] === t && ours[k][1] === texts[i]);
}

function show(x: unknown): string {
  const s = JSON.stringify(x);
  return s.length > 400 ? `${s.slice(0, 400)}...` : s;
}

describe('prompt syntax: parity with AUTOMATIC1111', function () {
  it(`fixture: ${corpus} corpus prompts, ${fuzz} random strings, lark ${fixture.lark}`, function () {
    assert.equal(fixture.lark, '1.1.2');
    assert.ok(corpus >= 300, `corpus has ${corpus} prompts`);
    assert.ok(fuzz >= 2000, `fuzz has ${fuzz} strings`);
    assert.deepEqual(fixture.steps, [20, 30]);
  });

  for (const steps of [20, 30] as const) {
    it(`promptSchedule(p, ${steps}) equals get_learned_conditioning_prompt_schedules on every entry`, function () {
      const failures: string[] = [];
      let unanimous = 0;
      let varied = 0;
      let variedOurs = 0;
      let asLark13 = 0; // for information: lark >= 1.2 orders tied derivations by insertion instead
      for (const e of entries) {
        const answers = e[`s${steps}`];
        const counts = e[`n${steps}`] ?? [fixture.seeds];
        const ours = attempt(() => promptSchedule(e.p, steps));
        // Lark's tie order fixed (scripts/make_prompt_fixture.py fix_order): one answer A1111 can
        // give, and the one this implementation chooses, on every entry.
        const fixed = answers[e[`r${steps}`] ?? 0];
        if (!matches(ours, fixed, e.texts)) {
          failures.push(`${show(e.p)}\n    ours ${show(ours)}\n    A1111 ${show(fixed)}`);
          continue;
        }
        if (matches(ours, answers[e[`m${steps}`] ?? 0], e.texts)) asLark13++;
        const observed = answers.filter((_, i) => counts[i] > 0);
        if (observed.length === 1) {
          // Every hash seed gave the same answer: A1111 is deterministic here, so must we be equal.
          unanimous++;
          if (!matches(ours, observed[0], e.texts)) {
            failures.push(`${show(e.p)} (all seeds agree)\n    ours ${show(ours)}\n    A1111 ${show(observed[0])}`);
          }
        } else {
          varied++;
          if (observed.some((a) => matches(ours, a, e.texts))) variedOurs++;
        }
      }
      assert.equal(failures.length, 0, `${failures.length} differ:\n  ${failures.slice(0, 5).join('\n  ')}`);
      assert.equal(unanimous + varied, entries.length);
      // Where lark 1.1.2's answer depends on the hash seed, ours was usually among those seen.
      assert.ok(variedOurs >= 0.8 * varied, `ours seen in ${variedOurs} of ${varied} seed-dependent entries`);
      this.test!.title +=
        ` (${unanimous} deterministic entries equal; ${varied} hash-seed dependent in A1111, ours among` +
        ` its ${fixture.seeds} seeds' answers in ${variedOurs}; same as lark ${fixture.installed_lark} on ${asLark13})`;
    });
  }

  it('parseAttention equals parse_prompt_attention on every entry (weights within 1e-9)', function () {
    const failures: string[] = [];
    for (const e of entries) {
      const ours = attempt(() => parseAttention(e.p));
      const ref = e.att;
      let ok: boolean;
      if (isPyError(ref)) ok = 'thrown' in ours && ours.thrown.includes(ref.error);
      else {
        ok =
          Array.isArray(ours) &&
          ours.length === ref.length &&
          ref.every(([t, w], i) => ours[i][0] === t && sameWeight(ours[i][1], weightOf(w)));
      }
      if (!ok) failures.push(`${show(e.p)}\n    ours ${show(ours)}\n    A1111 ${show(ref)}`);
    }
    assert.equal(failures.length, 0, `${failures.length} differ:\n  ${failures.slice(0, 5).join('\n  ')}`);
  });

  it('extractExtraNetworks equals extra_networks.parse_prompt on every entry', function () {
    const failures: string[] = [];
    let tagged = 0;
    for (const e of entries) {
      const ours = extractExtraNetworks(e.p);
      const ref = e.en ?? { text: e.p, nets: [] };
      if (ref.nets.length) tagged++;
      // A1111 groups the tags by type (dict order: first appearance); ours are in prompt order.
      const grouped: Array<[string, ExtraNetwork[]]> = [];
      for (const n of ours.networks) {
        const g = grouped.find(([t]) => t === n.type);
        if (g) g[1].push(n);
        else grouped.push([n.type, [n]]);
      }
      const same =
        ours.text === ref.text &&
        grouped.length === ref.nets.length &&
        grouped.every(([type, list], i) => {
          const [refType, refList] = ref.nets[i];
          return (
            type === refType &&
            list.length === refList.length &&
            list.every((n, k) => {
              const r = refList[k];
              const mult = r.float1 === null ? NaN : weightOf(r.float1);
              return (
                JSON.stringify([n.items, n.positional, n.named]) === JSON.stringify([r.items, r.positional, r.named]) &&
                n.name === (r.positional[0] ?? '') &&
                sameWeight(n.multiplier, mult)
              );
            })
          );
        });
      if (!same) failures.push(`${show(e.p)}\n    ours ${show(ours)}\n    A1111 ${show(ref)}`);
    }
    assert.equal(failures.length, 0, `${failures.length} differ:\n  ${failures.slice(0, 5).join('\n  ')}`);
    assert.ok(tagged >= 100, `only ${tagged} entries have tags`);
  });
});

describe('prompt syntax: the grammar, by example', function () {
  const g = (p: string, steps = 10): Array<[number, string]> => promptSchedule(p, steps);

  it("A1111's own doctests (prompt_parser.py)", function () {
    assert.deepEqual(g('test'), [[10, 'test']]);
    assert.deepEqual(g('a [b:3]'), [[3, 'a '], [10, 'a b']]);
    assert.deepEqual(g('a [b: 3]'), [[3, 'a '], [10, 'a b']]);
    assert.deepEqual(g('a [[[b]]:2]'), [[2, 'a '], [10, 'a [[b]]']]);
    assert.deepEqual(g('[(a:2):3]'), [[3, ''], [10, '(a:2)']]);
    assert.deepEqual(g('a [b : c : 1] d'), [[1, 'a b  d'], [10, 'a  c  d']]);
    assert.deepEqual(g('a[b:[c:d:2]:1]e'), [[1, 'abe'], [2, 'ace'], [10, 'ade']]);
    assert.deepEqual(g('a [unbalanced'), [[10, 'a [unbalanced']]);
    assert.deepEqual(g('a [b:.5] c'), [[5, 'a  c'], [10, 'a b c']]);
    assert.deepEqual(g('((a][:b:c [d:3]'), [[3, '((a][:b:c '], [10, '((a][:b:c d']]);
    assert.deepEqual(
      g('[a|(b:1.1)]').map(([s, t]) => `${s}:${t}`),
      Array.from({ length: 10 }, (_, i) => `${i + 1}:${i % 2 ? '(b:1.1)' : 'a'}`),
    );
    assert.deepEqual(
      g('[fe|]male').map(([, t]) => t),
      Array.from({ length: 10 }, (_, i) => (i % 2 ? 'male' : 'female')),
    );
    assert.deepEqual(
      g('[fe|||]male').map(([, t]) => t),
      Array.from({ length: 10 }, (_, i) => (i % 4 ? 'male' : 'female')),
    );
    // The doctest A1111 marks "not handling this right now" expects editing; its code falls back.
    assert.deepEqual(g('a [{b|d{:.5] c'), [[10, 'a [{b|d{:.5] c']]);
  });

  it('prompt editing: [from:to:when], [to:when], [from::when]', function () {
    const twenty = (p: string): Array<[number, string]> => promptSchedule(p, 20);
    assert.deepEqual(twenty('a [dog:cat:5] b'), [[5, 'a dog b'], [20, 'a cat b']]);
    assert.deepEqual(twenty('[dog:cat:0.25]'), [[5, 'dog'], [20, 'cat']]); // "." : fraction of steps
    assert.deepEqual(twenty('[dog:cat:1.0]'), [[20, 'dog']]); // 1.0 is all the steps ...
    assert.deepEqual(twenty('[dog:cat:1]'), [[1, 'dog'], [20, 'cat']]); // ... 1 is step 1
    assert.deepEqual(twenty('[dog:cat:0]'), [[20, 'cat']]);
    assert.deepEqual(twenty('[dog:cat:-3]'), [[20, 'cat']]);
    assert.deepEqual(twenty('[dog:cat:99]'), [[20, 'dog']]);
    assert.deepEqual(twenty('[dog:cat:0.33]'), [[6, 'dog'], [20, 'cat']]); // 6.6 truncated
    assert.deepEqual(twenty('[dog:cat:1e1]'), [[10, 'dog'], [20, 'cat']]);
    assert.deepEqual(twenty('[dog: cat : 5 ]'), [[5, 'dog'], [20, ' cat ']]);
    assert.deepEqual(twenty('a [dog:5]'), [[5, 'a '], [20, 'a dog']]);
    assert.deepEqual(twenty('a [dog::5]'), [[5, 'a dog'], [20, 'a ']]);
    assert.deepEqual(twenty('[(red:1.2) dog:[cat]:3]'), [[3, '(red:1.2) dog'], [20, '[cat]']]);
    assert.throws(() => twenty('[dog:cat:1e400]'), /OverflowError/);
  });

  it('alternation: [a|b|c] takes the next option at every step', function () {
    assert.deepEqual(promptSchedule('[cat|dog|] x', 4), [
      [1, 'cat x'],
      [2, 'dog x'],
      [3, ' x'],
      [4, 'cat x'],
    ]);
    // Nested: every group counts the same global step, so at step 2 the inner one is at its
    // second option too.
    assert.deepEqual(promptSchedule('[a|[b|c]]', 4), [
      [1, 'a'],
      [2, 'c'],
      [3, 'a'],
      [4, 'c'],
    ]);
  });

  it("what A1111's parser cannot read stays as typed", function () {
    assert.deepEqual(g('a | b [c:d:5]'), [[10, 'a | b [c:d:5]']]); // "|" outside [..|..]: lark fails
    assert.deepEqual(g('a [c:d:5] \\'), [[10, 'a [c:d:5] \\']]); // trailing backslash: lark fails
    assert.deepEqual(g('[c:d:5x] (e'), [[10, '[c:d:5x] (e']]); // not editing: literal brackets
    assert.deepEqual(g('\\[c:d:5\\]'), [[10, '\\[c:d:5\\]']]); // escaped: text
    assert.deepEqual(g('[c:d:5] x]'), [[5, 'c x]'], [10, 'd x]']]); // a stray "]" is text
    // A1111 (lark 1.1.2) answers this one either way from one start to the next; we edit.
    assert.deepEqual(g('[c:d:5]]'), [[5, 'c]'], [10, 'd]']]);
  });

  it('attention: (x) [x] (x:w), nesting, escapes, unclosed brackets, BREAK', function () {
    assert.deepEqual(parseAttention('normal text'), [['normal text', 1.0]]);
    assert.deepEqual(parseAttention('an (important) word'), [
      ['an ', 1.0],
      ['important', 1.1],
      [' word', 1.0],
    ]);
    assert.deepEqual(parseAttention('(unbalanced'), [['unbalanced', 1.1]]);
    assert.deepEqual(parseAttention('\\(literal\\]'), [['(literal]', 1.0]]);
    assert.deepEqual(parseAttention('(unnecessary)(parens)'), [['unnecessaryparens', 1.1]]);
    assert.deepEqual(parseAttention('a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).'), [
      ['a ', 1.0],
      ['house', 1.5730000000000004],
      [' ', 1.1],
      ['on', 1.0],
      [' a ', 1.1],
      ['hill', 0.55],
      [', sun, ', 1.1],
      ['sky', 1.4641000000000006],
      ['.', 1.1],
    ]);
    assert.deepEqual(parseAttention('[x]'), [['x', 1 / 1.1]]);
    assert.deepEqual(parseAttention('(x: 1.3 )'), [['x', 1.3]]);
    assert.deepEqual(parseAttention('(x:١.٥)'), [['x', 1.5]]); // Unicode digits, as Python's \d and float()
    assert.deepEqual(parseAttention('a) b] c:'), [['a) b] c:', 1.0]]);
    assert.deepEqual(parseAttention('\\a\\\\'), [['a\\', 1.0]]);
    assert.deepEqual(parseAttention(''), [['', 1.0]]);
    assert.deepEqual(parseAttention('a BREAK b'), [
      ['a', 1.0],
      ['BREAK', -1],
      ['b', 1.0],
    ]);
    assert.deepEqual(parseAttention('(a BREAK b)'), [
      ['a', 1.1],
      ['BREAK', -1.1], // A1111 multiplies the marker too
      ['b', 1.1],
    ]);
    assert.deepEqual(parseAttention('aBREAK b éBREAK'), [['aBREAK b éBREAK', 1.0]]); // whole words only
    assert.throws(() => parseAttention('(a:1.2.3)'), /ValueError/);
  });

  it('extra networks: <type:name:multiplier:...>', function () {
    const r = extractExtraNetworks('a <lora:detail:0.7>, b <hypernet:h> <lora:x:0.5:te=0.2:unet=1>');
    assert.equal(r.text, 'a , b  ');
    assert.deepEqual(
      r.networks.map((n) => [n.type, n.name, n.items, n.multiplier]),
      [
        ['lora', 'detail', ['detail', '0.7'], 0.7],
        ['hypernet', 'h', ['h'], 1],
        ['lora', 'x', ['x', '0.5', 'te=0.2', 'unet=1'], 0.5],
      ],
    );
    assert.deepEqual(r.networks[2].named, { te: '0.2', unet: '1' });
    assert.deepEqual(extractExtraNetworks('[<lora:a:1>|b]').text, '[|b]');
    assert.equal(extractExtraNetworks('<lora:a: 1_0 >').networks[0].multiplier, 10); // Python float()
    assert.ok(Number.isNaN(extractExtraNetworks('<lora:a:abc>').networks[0].multiplier));
    assert.deepEqual(extractExtraNetworks('<lora a:1> <lora:> <:a:1>').networks, []);
  });

  it('rejects bad arguments with clear errors', function () {
    assert.throws(() => promptSchedule('a', 0), RangeError);
    assert.throws(() => promptSchedule('a', 1.5), RangeError);
    assert.throws(() => promptSchedule('a', NaN), RangeError);
    assert.throws(() => promptSchedule('a', MAX_SCHEDULE_STEPS + 1), RangeError);
    assert.throws(() => promptSchedule(null as unknown as string, 20), TypeError);
    assert.throws(() => parseAttention(3 as unknown as string), TypeError);
    assert.throws(() => extractExtraNetworks(undefined as unknown as string), TypeError);
  });
});

// Deterministic pseudo-random numbers (mulberry32).
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ATOMS = [
  ...'()[]:|\\<>()[]:|\\<>0123456789.-+ ,=e_',
  'BREAK',
  ' BREAK ',
  'cat',
  'red dog',
  'lora',
  '<lora:x:0.5>',
  '1.2',
  ':0.5]',
  ':5]',
  '\n',
  '\t',
  'é',
  '日本',
  '😀',
  '\ud83d', // a lone surrogate
  '\u3000',
  '\xa0',
  '\u0663',
  '１',
  '\x1f',
  '\ufeff',
  '\u2028',
  '\0',
];

function check(p: string): void {
  for (const steps of [1, 20]) {
    const s = attempt(() => promptSchedule(p, steps));
    if (!('thrown' in s)) {
      assert.ok(s.length >= 1 && s[s.length - 1][0] === steps, show([p, s]));
      for (let i = 0; i < s.length; i++) {
        assert.ok(Number.isInteger(s[i][0]) && s[i][0] >= 1 && (i === 0 || s[i][0] > s[i - 1][0]), show([p, s]));
        assert.equal(typeof s[i][1], 'string');
      }
    }
  }
  const a = attempt(() => parseAttention(p));
  if (!('thrown' in a)) {
    assert.ok(a.length >= 1, show(p));
    for (const [t, w] of a) assert.ok(typeof t === 'string' && typeof w === 'number', show([p, a]));
  }
  const en = extractExtraNetworks(p);
  assert.ok(en.text.length <= p.length);
  for (const n of en.networks) {
    assert.ok(n.type.length > 0 && n.items.length >= 1 && typeof n.multiplier === 'number', show([p, n]));
    assert.ok(p.includes(`<${n.type}:${n.items.join(':')}>`), show([p, n]));
  }
}

describe('prompt syntax: malformed prompts never crash or hang', function () {
  it('20,000 random strings of syntax characters, digits, BREAK, words and Unicode', function () {
    const random = rng(1234);
    const started = Date.now();
    for (let n = 0; n < 20000; n++) {
      let p = '';
      const len = Math.floor(random() * 40);
      for (let i = 0; i < len; i++) p += ATOMS[Math.floor(random() * ATOMS.length)];
      check(p);
    }
    assert.ok(Date.now() - started < 60000, 'too slow');
  });

  it('A1111 fails (Python exceptions) only where an Error is thrown here', function () {
    // Schedules: a step that is not finite. Attention: a weight that is not a number.
    for (const p of ['[a:b:1e400]', '[a:1.5e400]', '[a::-1e999]']) assert.throws(() => promptSchedule(p, 20), Error);
    for (const p of ['(a:1.2.3)', '(a:.)', '(a:..5)']) assert.throws(() => parseAttention(p), Error);
    // The same text where it is not editing or weighting is fine.
    assert.deepEqual(promptSchedule('[a:b:1e400', 20), [[20, '[a:b:1e400']]);
    assert.deepEqual(parseAttention('a:1.2.3)'), [['a:1.2.3)', 1]]);
  });

  it('deep nesting (10,000 levels) does not overflow the stack', function () {
    const depth = 10000;
    const wrap = (inner: string, open: string, close: string): string => {
      let s = inner;
      for (let i = 0; i < depth; i++) s = open + s + close;
      return s;
    };
    const started = Date.now();
    const unclosed = '('.repeat(depth);
    assert.deepEqual(promptSchedule(unclosed, 20), [[20, unclosed]]);
    assert.deepEqual(parseAttention(unclosed), [['', 1.0]]);
    assert.deepEqual(promptSchedule('['.repeat(depth) + 'a', 20), [[20, '['.repeat(depth) + 'a']]);
    assert.deepEqual(promptSchedule(']'.repeat(depth), 20), [[20, ']'.repeat(depth)]]);

    const parens = wrap('a', '(', ')');
    assert.deepEqual(promptSchedule(parens, 20), [[20, parens]]);
    const att = parseAttention(parens);
    assert.equal(att.length, 1);
    assert.equal(att[0][0], 'a');
    assert.equal(att[0][1], Infinity); // 1.1 ** 10000 overflows, as in Python

    const squares = wrap('a', '[', ']');
    assert.equal(parseAttention(squares)[0][1], 2.5e-323); // 10,000 times x (1/1.1): Python's answer too

    const edits = wrap('a', '[', ':b:5]'); // [[[a:b:5]:b:5]...
    assert.deepEqual(promptSchedule(edits, 20), [
      [5, 'a'],
      [20, 'b'],
    ]);
    const alternations = wrap('a', '[x|', ']'); // [x|[x|[x|a]]]
    const alt = promptSchedule(alternations, 20);
    assert.equal(alt.length, 20);
    assert.deepEqual(alt.slice(0, 3), [
      [1, 'x'],
      [2, 'a'], // option 2 at every level, down to the innermost
      [3, 'x'],
    ]);

    const mixed = wrap('<lora:a:1> BREAK \\( x', '([', ':1.2])');
    assert.ok(Array.isArray(promptSchedule(mixed, 30)));
    assert.ok(Array.isArray(parseAttention(mixed)));
    assert.equal(extractExtraNetworks(mixed).networks.length, 1);

    const manyOpen = '(a'.repeat(depth / 2) + ')'.repeat(depth / 2); // quadratic, as in A1111
    assert.equal(parseAttention(manyOpen).length, depth / 2); // 1.1 .. 1.1 ** 5000: all different
    assert.ok(Date.now() - started < 20000, 'too slow');
  });

  it('long prompts stay linear', function () {
    const long = 'masterpiece, (best quality:1.2), [a|b], [dog:cat:0.5], <lora:x:0.5> BREAK '.repeat(2000);
    const started = Date.now();
    const text = extractExtraNetworks(long).text;
    const schedule = promptSchedule(text, 30);
    assert.equal(schedule.length, 30);
    for (const [, t] of schedule.slice(0, 3)) parseAttention(t);
    assert.ok(Date.now() - started < 10000, 'too slow');
  });
});
