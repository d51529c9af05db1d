// A1111 infotext ("parameters"): the text it writes into PNGs and reads back.

export interface InfotextParams {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  /** A1111 display name, e.g. "Euler a", "DPM++ 2M Karras". */
  sampler: string;
  cfgScale: number;
  seed: number | bigint;
  width: number;
  height: number;
  /** First 10 hex digits of the checkpoint's sha256 (see modelHash). */
  modelHash?: string;
  /** Checkpoint name, conventionally the file name without extension. */
  modelName?: string;
  /** img2img: "Denoising strength". */
  strength?: number;
  /** Written (with batchPos) only when 2 or more, as older A1111 did. */
  batchSize?: number;
  batchPos?: number;
  /** More "key: value" pairs, appended in order (A1111's extra_generation_params). */
  extra?: Record<string, string | number>;
}

/** A1111's `quote`: values with a comma, colon or newline become JSON strings. */
const quote = (v: string) => (/[,:\n]/.test(v) ? JSON.stringify(v) : v);

/**
 * The A1111 infotext, laid out as its `create_infotext`:
 * `prompt\nNegative prompt: ...\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512,
 * Model hash: abcdef1234, Model: name` (the negative line only when non-empty; numbers as Python
 * prints them: 7, 7.5).
 */
export function formatInfotext(p: InfotextParams): string {
  const batched = p.batchSize !== undefined && p.batchSize >= 2;
  const params: [string, string | number | bigint | undefined][] = [
    ['Steps', p.steps],
    ['Sampler', p.sampler],
    ['CFG scale', p.cfgScale],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.modelName],
    ['Batch size', batched ? p.batchSize : undefined],
    ['Batch pos', batched ? p.batchPos : undefined],
    ['Denoising strength', p.strength],
    ...Object.entries(p.extra ?? {}),
  ];
  const line = params
    .filter((kv): kv is [string, string | number | bigint] => kv[1] !== undefined && kv[1] !== '')
    .map(([k, v]) => (k === v ? k : `${k}: ${quote(String(v))}`))
    .join(', ');
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${line}`.trim();
}

export interface ParsedInfotext {
  prompt: string;
  negativePrompt: string;
  /** The "key: value" pairs of the last line, unquoted, e.g. { Steps: "20", Sampler: "Euler a", Size: "512x512" }. */
  params: Record<string, string>;
}

const PARAM = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/gu;

/** Parses an A1111 infotext as its `parse_generation_parameters` does. */
export function parseInfotext(text: string): ParsedInfotext {
  const lines = text.trim().split('\n');
  let last = lines.pop() ?? '';
  if ([...last.matchAll(PARAM)].length < 3) {
    lines.push(last);
    last = '';
  }
  let prompt = '';
  let negativePrompt = '';
  let inNegative = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith('Negative prompt:')) {
      inNegative = true;
      line = line.slice(16).trim();
    }
    if (inNegative) negativePrompt += (negativePrompt === '' ? '' : '\n') + line;
    else prompt += (prompt === '' ? '' : '\n') + line;
  }
  const params: Record<string, string> = {};
  for (const [, key, value] of last.matchAll(PARAM)) {
    if (key === undefined || value === undefined || key === '__proto__') continue;
    params[key] = unquote(value);
  }
  return { prompt, negativePrompt, params };
}

function unquote(v: string): string {
  if (v.length < 2 || !v.startsWith('"') || !v.endsWith('"')) return v;
  try {
    const parsed: unknown = JSON.parse(v);
    return typeof parsed === 'string' ? parsed : v;
  } catch {
    return v;
  }
}
