// AUTOMATIC1111's prompt syntax, as its web UI reads a prompt:
//   modules/extra_networks.py  parse_prompt             -> extractExtraNetworks
//   modules/prompt_parser.py   get_learned_conditioning_prompt_schedules -> promptSchedule
//   modules/prompt_parser.py   parse_prompt_attention   -> parseAttention
// In the web UI a prompt first loses its <type:...> tags (extractExtraNetworks), is then cut at AND
// (composable diffusion, not covered here), each part becomes a schedule of texts (promptSchedule),
// and each text of a schedule becomes weighted chunks (parseAttention) for the text encoder.
//
// test/fixtures/prompt-reference.json (made by scripts/make_prompt_fixture.py, which runs the real
// prompt_parser.py with lark 1.1.2, the version A1111 pins) holds A1111's outputs for a corpus of
// prompts and random strings; test/prompt.test.ts checks these functions against every entry.
//
// Nothing here recurses: nesting depth is bounded by memory, not by the call stack.

// ---------------------------------------------------------------------------------------------
// Python `re` character classes (str patterns: Unicode). JS regex classes differ: `\s` (JS adds
// U+FEFF and lacks U+001C-U+001F and U+0085), `\w`/`\d`/`\b` (ASCII in JS). The tables follow the
// Python that made the fixture (3.11, Unicode 14): letters and digits Unicode added later are
// "other" to it, so they are taken out of Node's newer \p{L}/\p{N} (A1111's Python 3.10 has
// Unicode 13; the few letters Unicode 14 added are the only difference from it).

const POST_UNICODE14_WORD = hexRanges(
  '88f c5c cdc 1c89-1c8a a7cb-a7cf a7d2 a7d4 a7da-a7dc a7f1 105c0-105f3 10940-10959 10d40-10d65 ' +
    '10d6f-10d85 10ec2-10ec7 1123f-11240 11380-11389 1138b 1138e 11390-113b5 113b7 113d1 113d3 ' +
    '116d0-116e3 11bc0-11be0 11bf0-11bf9 11db0-11ddb 11de0-11de9 11f02 11f04-11f10 11f12-11f33 ' +
    '11f50-11f59 1342f 13441-13446 13460-143fa 16100-1611d 16130-16139 16d40-16d6c 16d70-16d79 ' +
    '16ea0-16eb8 16ebb-16ed3 16ff2-16ff6 187f8-187ff 18cff 18d09-18d1e 18d80-18df2 1b132 1b155 ' +
    '1ccf0-1ccf9 1d2c0-1d2d3 1df25-1df2a 1e030-1e06d 1e4d0-1e4eb 1e4f0-1e4f9 1e5d0-1e5ed 1e5f0-1e5fa ' +
    '1e6c0-1e6de 1e6e0-1e6e2 1e6e4-1e6e5 1e6e7-1e6ed 1e6f0-1e6f4 1e6fe-1e6ff 2b739-2b73f 2cea2-2cead ' +
    '2ebf0-2ee5d 31350-33479',
);
// Python `\w` (str.isalnum() or "_"), `\d` (category Nd), `\s` (str.isspace()).
const PY_WORD = `[[\\p{L}\\p{N}_]--${POST_UNICODE14_WORD}]`;
const PY_DIGIT = `[\\p{Nd}--${POST_UNICODE14_WORD}]`;
const PY_SPACE = '[\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_SPACE_CHAR = new RegExp(`^${PY_SPACE}$`, 'v');
const PY_WORD_CHAR = new RegExp(`^${PY_WORD}$`, 'v');
const PY_DIGIT_CHAR = new RegExp(`^${PY_DIGIT}$`, 'v');

function hexRanges(list: string): string {
  const hex = (h: string): string => `\\u{${h}}`;
  return `[${list.split(' ').map((r) => r.split('-').map(hex).join('-')).join('')}]`;
}

function isPySpace(ch: string): boolean {
  return PY_SPACE_CHAR.test(ch);
}

/** Python's `\b` before/after index `i` of `s` (code-unit index on a code-point boundary). */
function isWordAt(s: string, i: number, before: boolean): boolean {
  if (before ? i <= 0 : i >= s.length) return false;
  const cp = before ? codePointBefore(s, i) : s.codePointAt(i)!;
  return PY_WORD_CHAR.test(String.fromCodePoint(cp));
}

function codePointBefore(s: string, i: number): number {
  const lo = s.charCodeAt(i - 1);
  if (lo >= 0xdc00 && lo <= 0xdfff && i >= 2) {
    const hi = s.charCodeAt(i - 2);
    if (hi >= 0xd800 && hi <= 0xdbff) return s.codePointAt(i - 2)!;
  }
  return lo;
}

/** The value of a Unicode decimal digit (category Nd): they come in runs of ten from zero. */
function digitValue(cp: number): number {
  if (cp >= 0x30 && cp <= 0x39) return cp - 0x30;
  let start = cp;
  while (start > 0 && PY_DIGIT_CHAR.test(String.fromCodePoint(start - 1))) start--;
  return (cp - start) % 10;
}

/** Python digits (any Nd) to ASCII, as float() reads them. */
function asciiDigits(s: string): string {
  if (!/[^\p{ASCII}]/u.test(s)) return s;
  let out = '';
  for (const ch of s) {
    out += PY_DIGIT_CHAR.test(ch) ? String(digitValue(ch.codePointAt(0)!)) : ch;
  }
  return out;
}

const PY_FLOAT =
  /^[+-]?(?:(?:(?:[0-9](?:_?[0-9])*)?\.[0-9](?:_?[0-9])*|[0-9](?:_?[0-9])*\.?)(?:[eE][+-]?[0-9](?:_?[0-9])*)?|inf|infinity|nan)$/i;

/**
 * Python's float(str): surrounding whitespace, Unicode digits, "_" between digits, inf/nan.
 * NaN where Python raises ValueError.
 */
function pyFloat(text: string): number {
  let s = text;
  let a = 0;
  let b = s.length;
  while (a < b && isPySpace(s[a])) a++;
  while (b > a && isPySpace(s[b - 1])) b--;
  s = asciiDigits(s.slice(a, b));
  if (!PY_FLOAT.test(s)) return NaN;
  const lower = s.toLowerCase().replace(/_/g, '');
  const sign = lower.startsWith('-') ? -1 : 1;
  const body = lower.replace(/^[+-]/, '');
  if (body === 'inf' || body === 'infinity') return sign * Infinity;
  if (body === 'nan') return NaN;
  return Number(lower);
}

// ---------------------------------------------------------------------------------------------
// Extra networks: <lora:name:0.7>

/**
 * An extra-network tag removed from the prompt text: <lora:name:0.7> -> { type: 'lora', name: 'name',
 * items: ['name', '0.7'], multiplier: 0.7 } (multiplier defaults to 1).
 *
 * As A1111's ExtraNetworkParams (modules/extra_networks.py): `items` are the colon-separated
 * arguments as written (never trimmed); an item with exactly one "=" is `named` (later ones win),
 * the others are `positional`. As its LoRA handler (extensions-builtin/Lora/extra_networks_lora.py):
 * `name` is positional[0] ('' when there is none: A1111 fails to activate such a tag) and
 * `multiplier` is positional[1] read as Python's float() reads it (" 0.5", "1_0", "inf", "１"
 * are numbers; 1 when absent; NaN when it is not a number: A1111 then fails to activate the
 * network). Named te=/unet=/dyn= arguments stay in `named` for the caller; they do not change
 * `multiplier`.
 */
export interface ExtraNetwork {
  type: string;
  name: string;
  items: string[];
  multiplier: number;
  positional: string[];
  named: Record<string, string>;
}

/**
 * A1111 extra_networks.parse_prompt: the text without <type:...> tags, and the tags in order.
 *
 * A tag is `<`, one or more word characters (Python `\w`: Unicode letters, digits, "_"), `:`, then
 * anything up to the next `>` (at least one character; it may hold `<`, `:`, spaces, newlines).
 * Every such tag is cut out, whatever its type (A1111 skips unknown types later, when activating).
 * Tags are found anywhere, also inside brackets: "[<lora:a:1>|b]" becomes "[|b]". A1111 groups the
 * tags by type (a dict of lists); `networks` is the flat list in prompt order.
 *
 * @param prompt the prompt as typed (string).
 * @returns text: the prompt with the tags replaced by ""; networks: ExtraNetwork[] in order.
 */
export function extractExtraNetworks(prompt: string): { text: string; networks: ExtraNetwork[] } {
  if (typeof prompt !== 'string') throw new TypeError(`prompt must be a string, not ${typeof prompt}`);
  const networks: ExtraNetwork[] = [];
  // re.sub(r"<(\w+):([^>]+)>", ...) by hand, in linear time (the regex backtracks quadratically on
  // e.g. "<a:<a:<a:..." without a ">"): matches are leftmost and do not overlap; one starts at a
  // "<", takes the whole run of word characters after it (at least one; ":" is not one), then ":",
  // then at least one character up to the next ">".
  let text = '';
  let copied = 0;
  for (let at = prompt.indexOf('<'); at >= 0; ) {
    let end = at + 1;
    while (end < prompt.length) {
      const ch = String.fromCodePoint(prompt.codePointAt(end)!);
      if (!PY_WORD_CHAR.test(ch)) break;
      end += ch.length;
    }
    if (end > at + 1 && prompt[end] === ':') {
      const close = prompt.indexOf('>', end + 1);
      if (close < 0) break; // no ">" further on: no later tag either
      if (close > end + 1) {
        networks.push(extraNetwork(prompt.slice(at + 1, end), prompt.slice(end + 1, close)));
        text += prompt.slice(copied, at);
        copied = close + 1;
        at = prompt.indexOf('<', copied);
        continue;
      }
    }
    at = prompt.indexOf('<', at + 1);
  }
  text += prompt.slice(copied);
  return { text, networks };
}

/** ExtraNetworkParams(items=args.split(":")) and the LoRA handler's reading of it. */
function extraNetwork(type: string, args: string): ExtraNetwork {
  const items = args.split(':');
  const positional: string[] = [];
  const named: Record<string, string> = {};
  for (const item of items) {
    // Python item.split('=', 2): two parts exactly when there is a single '='.
    const first = item.indexOf('=');
    if (first >= 0 && item.indexOf('=', first + 1) < 0) named[item.slice(0, first)] = item.slice(first + 1);
    else positional.push(item);
  }
  const multiplier = positional.length > 1 ? pyFloat(positional[1]) : 1;
  return { type, name: positional[0] ?? '', items, multiplier, positional, named };
}

// ---------------------------------------------------------------------------------------------
// Prompt editing and alternation: [a:b:N], [a|b]
//
// A1111 parses a prompt with a lark grammar (Earley parser, dynamic lexer, ambiguity "resolve").
// In words: the whole text is a sequence of `prompt`s and of single literal characters among
// [ ] ( ) : ; a `prompt` is a sequence of items, an item being
//   - plain text: characters other than \ [ ] ( ) : |, and backslash pairs (\ and any character
//     but a newline), or whitespace;
//   - an emphasis, kept as written: ( prompt ), ( prompt : prompt ), [ prompt ];
//   - an edit: [ prompt : prompt : N ] or [ prompt : N ], N a signed integer or decimal with an
//     optional exponent (lark's SIGNED_NUMBER), whitespace allowed around N;
//   - an alternation: [ prompt | prompt ... ], options after the first may be empty.
// A1111 falls back to the prompt unchanged ([[steps, prompt]]) when lark finds no parse. A parse
// exists unless the text has a backslash with nothing after it (or a newline after it), or a "|"
// outside every valid [..|..] group: bracket characters that close nothing, and the brackets
// of groups that are not valid, become literal tokens at the top ("start") level.
//
// Lark keeps one parse of an ambiguous text, chosen by rule order: at the top level a span that is
// a whole `prompt` wins over literal tokens, and a span ending in a `prompt` wins over one ending
// in literal tokens. Inside a `prompt` the grammar leaves no choice that changes the text. One
// choice remains: a span ending in a run of bracket characters that closes nothing can be cut into
// "earlier text + literal run" at several places (e.g. "[a:b:5]]": the editing group and a
// literal "]", or "[a:b:5" literal and "]]" literal). Lark 1.1.2 orders those alternatives by
// Python's hash(), which is salted per process (PYTHONHASHSEED): A1111 gives either text, by
// chance, from one start of the web UI to the next. This code takes the shortest literal run
// (the editing group works: "a]" then "b]"); lark 1.3 orders them by insertion and answers either
// way depending on the text. The fixture records the answers A1111 gave over 12 hash seeds, and
// the answer of A1111's code with lark's order of tied alternatives fixed to this choice (latest
// split first; scripts/make_prompt_fixture.py fix_order), which this code gives on every entry.

/** Tokens of the schedule grammar: a text run (plain/whitespace) or one syntax character. */
const enum T {
  Text = 0,
  LPar,
  RPar,
  LSqb,
  RSqb,
  Colon,
  Bar,
}

const CHAR_TOKEN: Record<string, T> = { '(': T.LPar, ')': T.RPar, '[': T.LSqb, ']': T.RSqb, ':': T.Colon, '|': T.Bar };

// A group of matching brackets that the grammar accepts as one item.
const enum G {
  Invalid = 0,
  Emphasis, // (a) [a] (a:b) -- kept as written
  Scheduled, // [a:b:N] [a:N]
  Alternate, // [a|b|...]
}

// lark's common.SIGNED_NUMBER as lark compiles it; its alternatives in lark's order, so a match
// at a position is the one Python's re finds there: ["+"|"-"] (INT EXP | DECIMAL EXP? | INT).
const SIGNED_NUMBER = /[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.(?:[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+)/y;

/** `[WHITESPACE] NUMBER [WHITESPACE]` over a whole text run: the NUMBER, or null. */
function numberOf(run: string): string | null {
  let p = 0;
  while (p < run.length && isPySpace(run[p])) p++;
  SIGNED_NUMBER.lastIndex = p;
  const m = SIGNED_NUMBER.exec(run);
  if (!m) return null;
  let q = p + m[0].length;
  while (q < run.length && isPySpace(run[q])) q++;
  return q === run.length ? m[0] : null;
}

/** The parse of one prompt for the schedule grammar (null when lark would find none). */
interface Parsed {
  text: string;
  kind: T[];
  start: number[]; // token i spans text[start[i], start[i + 1])
  partner: Int32Array; // closer -> its opener, opener -> its closer, -1: none
  group: Uint8Array; // at a closer: G of the group it closes
  seps: Map<number, number[]>; // closer of a Scheduled/Alternate group -> its top-level separators
}

function tokenize(text: string): { kind: T[]; start: number[] } | null {
  const kind: T[] = [];
  const start: number[] = [];
  let i = 0;
  while (i < text.length) {
    const c = CHAR_TOKEN[text[i]];
    if (c !== undefined) {
      kind.push(c);
      start.push(i);
      i++;
      continue;
    }
    kind.push(T.Text);
    start.push(i);
    while (i < text.length) {
      const ch = text[i];
      if (ch === '\\') {
        // `\\.`: Python's "." is anything but "\n"; a lone backslash matches no terminal at all.
        if (i + 1 >= text.length || text[i + 1] === '\n') return null;
        i += 2;
      } else if (CHAR_TOKEN[ch] !== undefined) {
        break;
      } else {
        i++;
      }
    }
  }
  start.push(text.length);
  return { kind, start };
}

function parse(text: string): Parsed | null {
  const tok = tokenize(text);
  if (!tok) return null;
  const { kind, start } = tok;
  const n = kind.length;
  const partner = new Int32Array(n).fill(-1);
  const group = new Uint8Array(n);
  const seps = new Map<number, number[]>();
  // Open brackets, innermost last, each with its top-level separators and whether anything
  // inside it is not valid (then neither is it).
  const stack: Array<{ at: number; colons: number[]; bars: number[]; broken: boolean }> = [];
  for (let i = 0; i < n; i++) {
    const k = kind[i];
    if (k === T.LPar || k === T.LSqb) {
      stack.push({ at: i, colons: [], bars: [], broken: false });
    } else if (k === T.Colon || k === T.Bar) {
      const top = stack[stack.length - 1];
      if (top) (k === T.Colon ? top.colons : top.bars).push(i);
    } else if (k === T.RPar || k === T.RSqb) {
      const f = stack.pop();
      if (!f) continue; // closes nothing: a literal token
      partner[i] = f.at;
      partner[f.at] = i;
      let g = G.Invalid;
      if (f.broken) {
        // something inside is not valid: neither is this group
      } else if (k === T.RPar) {
        if (kind[f.at] === T.LPar && f.bars.length === 0 && f.colons.length <= 1) g = G.Emphasis;
      } else if (kind[f.at] === T.LSqb) {
        if (f.colons.length === 0 && f.bars.length === 0) g = G.Emphasis;
        else if (f.colons.length === 0) g = G.Alternate;
        else if (f.bars.length === 0 && f.colons.length <= 2) {
          // After the last colon: exactly one text run reading [WHITESPACE] NUMBER [WHITESPACE].
          const last = f.colons[f.colons.length - 1];
          if (last + 2 === i && kind[last + 1] === T.Text && numberOf(text.slice(start[last + 1], start[i])) !== null) {
            g = G.Scheduled;
          }
        }
      }
      group[i] = g;
      if (g === G.Scheduled) seps.set(i, f.colons);
      if (g === G.Alternate) seps.set(i, f.bars);
      if (g === G.Invalid && stack.length) stack[stack.length - 1].broken = true;
    }
  }
  return { text, kind, start, partner, group, seps };
}

/** A piece of the resolved parse: literal text, or an editing/alternation choice. */
type Seg = string | Switch;
interface Switch {
  alternate: boolean;
  when: number; // Scheduled: `parts[0]` shows up to this step, `parts[1]` after it
  parts: Seg[][]; // Scheduled: [before, after]; Alternate: the options, one per step in turn
}

/**
 * The parse lark keeps, as segments, for `steps` steps: the top level read from the right (a
 * whole `prompt` if the span is one, else the longest `prompt` ending the span, else one literal
 * token), then each group of the kept `prompt`s built with an explicit stack.
 */
function resolve(p: Parsed, steps: number): { segs: Seg[]; switches: Switch[] } | null {
  const { kind, partner, group } = p;
  const n = kind.length;
  // suffix[j]: where the longest `prompt` ending at token boundary j starts (j: none).
  const suffix = new Int32Array(n + 1);
  // ok[j]: tokens [0, j) have a parse as `start`.
  const ok = new Uint8Array(n + 1);
  ok[0] = 1;
  const literal = (i: number): boolean => kind[i] !== T.Text && kind[i] !== T.Bar;
  for (let j = 1; j <= n; j++) {
    const i = j - 1;
    if (kind[i] === T.Text) suffix[j] = suffix[i];
    else if ((kind[i] === T.RPar || kind[i] === T.RSqb) && partner[i] >= 0 && group[i] !== G.Invalid) {
      suffix[j] = suffix[partner[i]];
    } else suffix[j] = j;
    ok[j] = (literal(i) && ok[i]) || (suffix[j] < j && ok[suffix[j]]) ? 1 : 0;
  }
  if (!ok[n]) return null;

  // The top level, right to left: [from, to) token ranges, prompt or literal.
  const pieces: Array<{ from: number; to: number; prompt: boolean }> = [];
  let j = n;
  while (j > 0) {
    const m = suffix[j];
    if (m < j && ok[m]) {
      pieces.push({ from: m, to: j, prompt: true });
      j = m;
    } else if (literal(j - 1) && ok[j - 1]) {
      pieces.push({ from: j - 1, to: j, prompt: false });
      j--;
    } else {
      throw new Error('prompt parser: internal error (no parse of a parsed prefix)');
    }
  }
  pieces.reverse();

  const segs: Seg[] = [];
  const switches: Switch[] = [];
  const raw = (a: number, b: number): string => p.text.slice(p.start[a], p.start[b]);
  // Work: emit tokens [at, end) of a `prompt` into `out`.
  const work: Array<{ out: Seg[]; at: number; end: number }> = [];
  for (const piece of pieces) {
    if (!piece.prompt) {
      segs.push(raw(piece.from, piece.to));
      continue;
    }
    work.push({ out: segs, at: piece.from, end: piece.to });
    while (work.length) {
      const w = work[work.length - 1];
      if (w.at >= w.end) {
        work.pop();
        continue;
      }
      const i = w.at;
      const k = kind[i];
      if (k !== T.LPar && k !== T.LSqb) {
        // A text run, a closing bracket or a colon of an emphasis: as written.
        w.out.push(raw(i, i + 1));
        w.at++;
        continue;
      }
      const close = partner[i];
      const g = group[close];
      if (g === G.Emphasis) {
        // Kept as written ("!emphasized" keeps its brackets): the opener now, the inside next,
        // the closer when this work item resumes.
        w.out.push(raw(i, i + 1));
        w.at = close;
        work.push({ out: w.out, at: i + 1, end: close });
        continue;
      }
      const cuts = [i, ...p.seps.get(close)!, close];
      const sw: Switch = { alternate: g === G.Alternate, when: 0, parts: [] };
      if (g === G.Scheduled) {
        // [before:]after:N -- the parts before the last colon; before may be absent (empty).
        const number = numberOf(raw(close - 1, close))!;
        sw.when = whenOf(number, steps);
        const parts = cuts.length === 4 ? [[cuts[0], cuts[1]], [cuts[1], cuts[2]]] : [[-1, -1], [cuts[0], cuts[1]]];
        for (const [a, b] of parts) {
          const out: Seg[] = [];
          sw.parts.push(out);
          if (a >= 0) work.push({ out, at: a + 1, end: b });
        }
      } else {
        for (let c = 0; c + 1 < cuts.length; c++) {
          const out: Seg[] = [];
          sw.parts.push(out);
          work.push({ out, at: cuts[c] + 1, end: cuts[c + 1] });
        }
      }
      w.out.push(sw);
      switches.push(sw);
      w.at = close + 1;
    }
  }
  return { segs, switches };
}

/**
 * The step a `[a:b:N]` switches at (A1111's CollectSteps, use_old_scheduling=False, no hires): a
 * NUMBER with "." is a fraction of `steps`, else a step; truncated toward zero, at most `steps`.
 */
function whenOf(number: string, steps: number): number {
  let v = Number(number);
  if (number.includes('.')) v *= steps;
  if (!Number.isFinite(v)) {
    // Python: int(inf) raises OverflowError, which A1111 does not catch.
    throw new Error(`prompt editing step "${number}" is out of range (A1111 fails with OverflowError)`);
  }
  return Math.min(steps, Math.trunc(v));
}

/** The text of the segments at `step` (1-based). */
function render(segs: Seg[], step: number): string {
  let out = '';
  const stack: Array<{ segs: Seg[]; at: number }> = [{ segs, at: 0 }];
  while (stack.length) {
    const top = stack[stack.length - 1];
    if (top.at >= top.segs.length) {
      stack.pop();
      continue;
    }
    const s = top.segs[top.at++];
    if (typeof s === 'string') out += s;
    else if (!s.alternate) stack.push({ segs: s.parts[step <= s.when ? 0 : 1], at: 0 });
    else stack.push({ segs: s.parts[(step - 1) % s.parts.length], at: 0 });
  }
  return out;
}

/** The most steps promptSchedule accepts (each step may need its own text). */
export const MAX_SCHEDULE_STEPS = 10000;

/**
 * A1111 get_learned_conditioning_prompt_schedules for one prompt: [[endAtStep, text], ...] for
 * `steps` steps. Entry [s, text] means: text is the prompt for every step up to s (1-based) not
 * covered by an earlier entry; the last entry ends at `steps`.
 *
 * - [a:b:N] prompt editing: a up to step N, then b. [a:N]: nothing, then a. [a::N]: a, then
 *   nothing. N with a decimal point (0.25, 1.0, .5) is a fraction of `steps`, else a step number
 *   (A1111's current default, use_old_scheduling=False; its hires-fix offsets are left out). The
 *   step is truncated toward zero and capped at `steps`; one below 1 never shows a. Groups nest
 *   ("a[b:[c:d:2]:1]e"). A step that is not finite (1e400) makes A1111 fail: an Error here.
 * - [a|b|c] alternation: a at step 1, b at 2, c at 3, a at 4, ...; empty options allowed ("[fe|]male").
 * - (a), [a], (a:1.2) are left as written for parseAttention, as are escaped \( \) \[ \] \\.
 * - A prompt lark cannot parse (a "|" outside a valid [..|..], a trailing backslash) gives
 *   [[steps, prompt]], as A1111's fallback does; bracket characters that close nothing are text.
 *
 * @param prompt the prompt (after extractExtraNetworks, as in A1111), any string.
 * @param steps sampling steps, an integer in [1, MAX_SCHEDULE_STEPS].
 * @returns Array<[endAtStep: number, text: string]>, end steps strictly increasing, last = steps.
 */
export function promptSchedule(prompt: string, steps: number): Array<[number, string]> {
  if (typeof prompt !== 'string') throw new TypeError(`prompt must be a string, not ${typeof prompt}`);
  if (!Number.isInteger(steps) || steps < 1 || steps > MAX_SCHEDULE_STEPS) {
    throw new RangeError(`steps must be an integer from 1 to ${MAX_SCHEDULE_STEPS}, not ${steps}`);
  }
  const parsed = parse(prompt);
  const tree = parsed && resolve(parsed, steps);
  if (!tree) return [[steps, prompt]];
  const ends = new Set<number>([steps]);
  if (tree.switches.some((sw) => sw.alternate)) for (let s = 1; s <= steps; s++) ends.add(s);
  for (const sw of tree.switches) if (!sw.alternate && sw.when >= 1) ends.add(sw.when);
  return [...ends].sort((a, b) => a - b).map((s): [number, string] => [s, render(tree.segs, s)]);
}

// ---------------------------------------------------------------------------------------------
// Attention: (a) [a] (a:1.3) BREAK

const ROUND = 1.1;
const SQUARE = 1 / 1.1;
// re_break = \s*\bBREAK\b\s*
const SPACE_RUN = new RegExp(`${PY_SPACE}*`, 'y');

/** Python re.split(r"\s*\bBREAK\b\s*", text). */
function splitBreak(text: string): string[] {
  const parts: string[] = [];
  let from = 0; // start of the current part
  let search = 0; // where the next match may start
  for (let at = text.indexOf('BREAK', search); at >= 0; at = text.indexOf('BREAK', at + 1)) {
    if (isWordAt(text, at, true) || isWordAt(text, at + 5, false)) continue;
    let begin = at;
    while (begin > search && isPySpace(text[begin - 1])) begin--;
    SPACE_RUN.lastIndex = at + 5;
    SPACE_RUN.exec(text);
    parts.push(text.slice(from, begin));
    from = search = SPACE_RUN.lastIndex;
    at = search - 1;
  }
  parts.push(text.slice(from));
  return parts;
}

/**
 * A1111 parse_prompt_attention: the text as [chunk, weight] pairs.
 *
 * - (x): weight x1.1; [x]: x(1/1.1); (x:1.3): x1.3 (the number is [+-]?[.0-9]+ with Unicode digits
 *   allowed and spaces around it allowed, "(x: 1.3 )"). Nesting multiplies, applied innermost
 *   first in double precision exactly as A1111 does, so weights are bit for bit A1111's.
 * - Escapes \( \) \[ \] \\ give the character; another backslash is dropped alone ("\a" -> "a").
 * - Unclosed ( and [ apply to the end of the text (all ( first, then all [); a ) or ] that closes
 *   nothing, and a lone ":", are text. "(a:1.2]"-style mixes are text where they close nothing.
 * - BREAK (a whole word, spaces around it dropped) gives ["BREAK", -1]; brackets around it
 *   multiply that -1 too, as A1111 does.
 * - Neighbouring chunks with equal weights are merged; an empty text gives [["", 1]].
 *
 * A weight that is not a number ("(a:1.2.3)", "(a:.)") makes A1111 fail with ValueError: an
 * Error here.
 *
 * @param text one schedule text (string).
 * @returns Array<[text: string, weight: number]>.
 */
export function parseAttention(text: string): Array<[string, number]> {
  if (typeof text !== 'string') throw new TypeError(`text must be a string, not ${typeof text}`);
  // A1111 keeps one [text, weight] entry per token and multiplies ranges of entries. Entries added
  // with no bracket in between get the same multiplications in the same order, so they are kept as
  // one group of parts with one weight (split again only where the weight is NaN, which A1111's
  // merge never joins). The work is groups x nesting depth multiplications, as in A1111.
  const parts: string[][] = [];
  let weights = new Float64Array(64);
  let fresh = true; // a bracket since the last entry: the next entry starts a group
  const round: number[] = [];
  const square: number[] = [];
  const add = (t: string, w: number): void => {
    const g = parts.length - 1;
    if (!fresh && g >= 0 && weights[g] === w) {
      parts[g].push(t);
      return;
    }
    if (parts.length === weights.length) {
      const grown = new Float64Array(weights.length * 2);
      grown.set(weights);
      weights = grown;
    }
    weights[parts.length] = w;
    parts.push([t]);
    fresh = false;
  };
  const multiply = (from: number, by: number): void => {
    for (let p = from; p < parts.length; p++) weights[p] *= by;
    fresh = true;
  };
  const open = (stack: number[]): void => {
    stack.push(parts.length);
    fresh = true;
  };
  const addText = (t: string): void => {
    const pieces = splitBreak(t);
    for (let i = 0; i < pieces.length; i++) {
      if (i > 0) add('BREAK', -1);
      add(pieces[i], 1.0);
    }
  };
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '\\') {
      // \( \) \[ \] \\ -> the character; a lone backslash -> "".
      const next = text[i + 1];
      if (next === '(' || next === ')' || next === '[' || next === ']' || next === '\\') {
        add(next, 1.0);
        i += 2;
      } else {
        add('', 1.0);
        i += 1;
      }
    } else if (c === '(') {
      open(round);
      i++;
    } else if (c === '[') {
      open(square);
      i++;
    } else if (c === ':') {
      // :\s*([+-]?[.\d]+)\s*\)  else  a lone ":"
      const w = weightAt(text, i);
      if (w) {
        if (round.length) {
          const value = Number(asciiDigits(w.number));
          if (Number.isNaN(value)) {
            throw new Error(`attention weight "${w.number}" is not a number (A1111 fails with ValueError)`);
          }
          multiply(round.pop()!, value);
        } else addText(text.slice(i, w.end));
        i = w.end;
      } else {
        addText(':');
        i++;
      }
    } else if (c === ')') {
      if (round.length) multiply(round.pop()!, ROUND);
      else addText(')');
      i++;
    } else if (c === ']') {
      if (square.length) multiply(square.pop()!, SQUARE);
      else addText(']');
      i++;
    } else {
      let j = i + 1;
      while (j < n && !'\\()[]:'.includes(text[j])) j++;
      addText(text.slice(i, j));
      i = j;
    }
  }
  for (const pos of round) multiply(pos, ROUND);
  for (const pos of square) multiply(pos, SQUARE);
  if (parts.length === 0) return [['', 1.0]];
  // Merge runs of identical weights (=== as Python's ==: NaN never merges, 0 and -0 do).
  const merged: Array<[string, number]> = [];
  for (let g = 0; g < parts.length; g++) {
    const w = weights[g];
    const last = merged[merged.length - 1];
    if (Number.isNaN(w)) for (const t of parts[g]) merged.push([t, w]);
    else if (last && last[1] === w) last[0] += parts[g].join('');
    else merged.push([parts[g].join(''), w]);
  }
  return merged;
}

const WEIGHT = new RegExp(`:${PY_SPACE}*([+\\-]?[.${PY_DIGIT}]+)${PY_SPACE}*\\)`, 'yv');

function weightAt(text: string, i: number): { number: string; end: number } | null {
  WEIGHT.lastIndex = i;
  const m = WEIGHT.exec(text);
  return m ? { number: m[1], end: WEIGHT.lastIndex } : null;
}
