// Prompts -> the contexts the denoiser asks for at each model evaluation: A1111's
// get_learned_conditioning (each prompt's schedule of edits encoded in one batch) and
// reconstruct_cond_batch (the entry in force at a step; rows of different lengths padded by
// repeating their last vector, as its stack_conds).
import { extendByLast, type StepContext } from '../sampling/denoiser';
import { Tensor } from '../tensor';
import type { Encoded, TextualInversion } from '../text/conditioning';
import { promptSchedule } from '../text/prompt';

/** One prompt's schedule: until evaluation `endAt` (inclusive), context row [1, T, W] (SDXL: and pooled [1, P]). */
interface Scheduled {
  entries: Array<{ endAt: number; context: Tensor; pooled?: Tensor }>;
}

export interface PromptPlan {
  contextAt(evaluation: number): StepContext;
  /** Embeddings the prompts used (for "TI hashes"). */
  usedEmbeddings: Set<TextualInversion>;
}

/**
 * Encodes each distinct prompt (extra-network tags already removed; edits scheduled over `scheduleSteps` evaluations)
 * and negative prompt once, and returns the per-evaluation batches: row b is prompt
 * ⌊b / batchSize⌋, as diffusers and A1111 order a batch. `zeroEmptyNegatives`: when every negative
 * prompt is '', the negative context and pooled vector are zeros (diffusers' force_zeros_for_empty_prompt,
 * A1111's SDXL "is_negative_prompt and all empty").
 */
export async function planPrompts(
  prompts: string[], negatives: string[] | null, batchSize: number, scheduleSteps: number,
  encode: (texts: string[]) => Promise<Encoded>, zeroEmptyNegatives = false,
): Promise<PromptPlan> {
  const usedEmbeddings = new Set<TextualInversion>();
  const cache = new Map<string, Promise<Scheduled>>();
  const schedule = (prompt: string): Promise<Scheduled> => {
    let s = cache.get(prompt);
    if (s === undefined) {
      s = (async () => {
        const entries = promptSchedule(prompt, scheduleSteps);
        const encoded = await encode(entries.map(([, text]) => text));
        for (const e of encoded.used) usedEmbeddings.add(e);
        return {
          entries: entries.map(([endAt], i) => ({
            endAt, context: encoded.context.slice(0, i, i + 1), ...(encoded.pooled ? { pooled: encoded.pooled.slice(0, i, i + 1) } : {}),
          })),
        };
      })();
      cache.set(prompt, s);
    }
    return s;
  };
  const conds: Scheduled[] = [];
  for (const p of prompts) conds.push(await schedule(p));
  let unconds = negatives ? await Promise.all(negatives.map(schedule)) : null;
  if (unconds && zeroEmptyNegatives && negatives!.every((n) => n === '')) {
    const zero = (t: Tensor) => t.mul(0);
    unconds = unconds.map((u) => ({ entries: u.entries.map((e) => ({ ...e, context: zero(e.context), ...(e.pooled ? { pooled: zero(e.pooled) } : {}) })) }));
  }
  return { contextAt: batcher(conds, unconds, batchSize), usedEmbeddings };
}

function batcher(conds: Scheduled[], unconds: Scheduled[] | null, batchSize: number): (evaluation: number) => StepContext {
  let last: { key: string; value: StepContext } | undefined;
  const pick = (s: Scheduled, step: number) => s.entries.findIndex((e) => step <= e.endAt);
  const at = (rows: Scheduled[], step: number) => rows.map((s) => s.entries[Math.max(0, pick(s, step))]!);
  const stack = (rows: Tensor[]) => {
    const tokens = Math.max(...rows.map((r) => r.shape[1]!));
    return Tensor.cat(rows.flatMap((r) => Array<Tensor>(batchSize).fill(extendByLast(r, tokens))));
  };
  const stackPooled = (rows: Array<{ pooled?: Tensor }>) =>
    rows.every((r) => r.pooled) ? Tensor.cat(rows.flatMap((r) => Array<Tensor>(batchSize).fill(r.pooled!))) : undefined;
  return (step) => {
    const key = [...conds, ...(unconds ?? [])].map((s) => pick(s, step)).join();
    if (last?.key !== key) {
      const c = at(conds, step);
      const u = unconds ? at(unconds, step) : null;
      const condPooled = stackPooled(c);
      last = {
        key,
        value: {
          cond: stack(c.map((e) => e.context)), uncond: u ? stack(u.map((e) => e.context)) : null,
          ...(condPooled ? { condPooled, uncondPooled: u ? stackPooled(u) ?? null : null } : {}),
        },
      };
    }
    return last.value;
  };
}
