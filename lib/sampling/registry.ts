// Samplers by name: each registry row pairs a sampler function with its schedule and the
// diffusers class it reproduces; names, A1111 aliases and the ONE validator of sampling options
// (sampler, schedule, steps, strength) live here.
import type { Tensor } from '../tensor';
import {
  ddim,
  ddpm,
  dpm2,
  dpm2Ancestral,
  dpmpp2m,
  dpmpp2mSde,
  euler,
  eulerAncestral,
  heun,
  levelAt,
  lms,
  plms,
  unipc,
  veDenoiser,
  vp,
  vpDenoiser,
  type Denoiser,
  type Model,
  type Prediction,
  type Sampler,
  type SamplerOptions,
  type Walk,
} from './samplers';
import {
  ddimSchedule,
  kdiffusionSchedule,
  multistepSchedule,
  noiseSchedule,
  plmsSchedule,
  scheduleProblem,
  TIMESTEP_SPACINGS,
  TRAIN_STEPS,
  type NoiseSchedule,
  type Schedule,
  type ScheduleName,
  type TimestepSpacing,
} from './schedules';

export type { Inpaint, Model, NoiseLevel, Prediction, Sampler, SamplerOptions } from './samplers';
export type { TimestepSpacing } from './schedules';

interface Spec {
  /** The A1111 display name. */
  label: string;
  /** The diffusers scheduler this reproduces. */
  diffusers: string;
  /** Whether diffusers offers use_karras_sigmas for it. */
  karras: boolean;
  /**
   * Whether the diffusers class offers rescale_betas_zero_snr, and how it stores the last ᾱ then:
   * 'zero' (DDIM, DDPM: ᾱ_999 = 0) or 'clamped' (the σ-based classes: 2^-24); false: no such option.
   */
  zeroSnr: false | 'zero' | 'clamped';
  /** The class's default timestep_spacing (from_config(SD 1.5 config) keeps it). */
  spacing: TimestepSpacing;
  /** 've': latents x0 + σ·ε, the model sees x/√(σ²+1); 'vp': α·x0 + σ_t·ε, the model sees x. */
  space: 've' | 'vp';
  /** Model evaluations per step (the last step of a two-stage method makes one). */
  evals: 1 | 2;
  schedule(train: NoiseSchedule, steps: number, schedule: ScheduleName, spacing: TimestepSpacing): Schedule;
  run(model: Model, x: Tensor, walk: Walk): Promise<Tensor>;
}

const kSpec = (
  label: string,
  diffusers: string,
  run: (m: Denoiser, x: Tensor, w: Walk) => Promise<Tensor>,
  { evals = 1, karras = true, roundKarras = false, zeroSnr = false }: { evals?: 1 | 2; karras?: boolean; roundKarras?: boolean; zeroSnr?: boolean } = {},
): Spec => ({
  label,
  diffusers,
  karras,
  zeroSnr: zeroSnr ? 'clamped' : false,
  spacing: 'linspace',
  space: 've',
  evals,
  schedule: (train, steps, schedule, spacing) => kdiffusionSchedule(train, steps, schedule, spacing, roundKarras),
  run: (m, x, w) => run(veDenoiser(m), x, w),
});

const multistepSpec = (label: string, diffusers: string, run: (m: Denoiser, x: Tensor, w: Walk) => Promise<Tensor>): Spec => ({
  label,
  diffusers,
  karras: true,
  zeroSnr: 'clamped',
  spacing: 'linspace',
  space: 'vp',
  evals: 1,
  schedule: multistepSchedule,
  run: (m, x, w) => run(vpDenoiser(m), x, w),
});

const discreteSpec = (label: string, diffusers: string, zeroSnr: boolean, schedule: (train: NoiseSchedule, steps: number, spacing: TimestepSpacing) => Schedule, run: Spec['run']): Spec => ({
  label,
  diffusers,
  karras: false,
  zeroSnr: zeroSnr ? 'zero' : false,
  spacing: 'leading',
  space: 'vp',
  evals: 1,
  schedule: (train, steps, _schedule, spacing) => schedule(train, steps, spacing),
  run,
});

const SPECS = {
  ddpm: discreteSpec('DDPM', 'DDPMScheduler', true, ddimSchedule, ddpm),
  ddim: discreteSpec('DDIM', 'DDIMScheduler', true, ddimSchedule, ddim),
  pndm: discreteSpec('PLMS', 'PNDMScheduler', false, plmsSchedule, plms),
  euler: kSpec('Euler', 'EulerDiscreteScheduler', euler, { zeroSnr: true }),
  euler_a: kSpec('Euler a', 'EulerAncestralDiscreteScheduler', eulerAncestral, { karras: false, zeroSnr: true }),
  heun: kSpec('Heun', 'HeunDiscreteScheduler', heun, { evals: 2 }),
  lms: kSpec('LMS', 'LMSDiscreteScheduler', lms),
  dpm2: kSpec('DPM2', 'KDPM2DiscreteScheduler', dpm2, { evals: 2, roundKarras: true }),
  dpm2_a: kSpec('DPM2 a', 'KDPM2AncestralDiscreteScheduler', dpm2Ancestral, { evals: 2, roundKarras: true }),
  dpmpp_2m: multistepSpec('DPM++ 2M', 'DPMSolverMultistepScheduler', dpmpp2m),
  dpmpp_2m_sde: multistepSpec('DPM++ 2M SDE', 'DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")', dpmpp2mSde),
  unipc: multistepSpec('UniPC', 'UniPCMultistepScheduler', unipc),
} satisfies Record<string, Spec>;

export type SamplerName = keyof typeof SPECS;
export const samplerNames: string[] = Object.keys(SPECS);
const karrasNames = (): string => samplerNames.filter((n) => SPECS[n as SamplerName].karras).join(', ');

const noKarras = (name: SamplerName): Error =>
  new Error(
    `sampler '${name}' has no karras schedule (diffusers' ${SPECS[name].diffusers} has no use_karras_sigmas): ` +
      `use schedule 'default', or one of the samplers that have it: ${karrasNames()}`,
  );

/** The schedule names there are; anything else is refused with the list. */
function scheduleName(schedule: string | undefined): ScheduleName {
  if (schedule === undefined || schedule === 'default' || schedule === 'karras') return schedule ?? 'default';
  throw new TypeError(`unknown schedule '${String(schedule)}': use 'default' or 'karras'`);
}

/** Samplers whose diffusers class offers rescale_betas_zero_snr. */
const zeroSnrNames = (): string => samplerNames.filter((n) => SPECS[n as SamplerName].zeroSnr).join(', ');

const PREDICTIONS: readonly Prediction[] = ['epsilon', 'v'];

/**
 * THE validator of sampling options: schedule, timestep spacing, zero terminal SNR, steps (1..1000,
 * the training steps), img2img strength and the model's prediction, for a sampler. Every
 * combination is walked as its diffusers class walks it, or refused here with the reason. Returns
 * the schedule to walk and the step img2img enters at.
 */
function check(name: SamplerName, opts: Omit<SamplerOptions, 'generator'>): { schedule: Schedule; from: number; to: number } {
  const spec: Spec = SPECS[name];
  const { steps, strength = 1, zeroTerminalSnr = false, prediction = 'epsilon' } = opts;
  const schedule = scheduleName(opts.schedule);
  if (schedule === 'karras' && !spec.karras) throw noKarras(name);
  const spacing = opts.timestepSpacing ?? spec.spacing;
  if (!TIMESTEP_SPACINGS.includes(spacing)) throw new TypeError(`unknown timestep spacing '${String(spacing)}': use ${TIMESTEP_SPACINGS.map((s) => `'${s}'`).join(', ')}`);
  if (typeof zeroTerminalSnr !== 'boolean') throw new TypeError(`zeroTerminalSnr must be true or false, got ${String(zeroTerminalSnr)}`);
  if (!PREDICTIONS.includes(prediction)) throw new TypeError(`unknown prediction '${String(prediction)}': use 'epsilon' or 'v'`);
  if (zeroTerminalSnr && !spec.zeroSnr) {
    throw new Error(`sampler '${name}' cannot use zero terminal SNR (diffusers' ${spec.diffusers} has no rescale_betas_zero_snr): use one of ${zeroSnrNames()}`);
  }
  if (!Number.isInteger(steps) || steps < 1 || steps > TRAIN_STEPS) {
    throw new RangeError(`steps must be an integer from 1 to ${TRAIN_STEPS}, got ${steps}`);
  }
  if (!(strength > 0 && strength <= 1)) throw new RangeError(`strength must be in (0, 1], got ${strength}`);
  // diffusers' img2img: init_timestep = min(int(steps·strength), steps); t_start = steps − init_timestep
  const kept = Math.min(Math.floor(steps * strength), steps);
  if (kept < 1) {
    throw new RangeError(`strength ${strength} leaves no step of ${steps} to run (int(steps·strength) = 0): raise strength or steps`);
  }
  const train = noiseSchedule(zeroTerminalSnr, spec.zeroSnr === 'clamped');
  const walk = spec.schedule(train, steps, schedule, spacing);
  const problem = scheduleProblem(walk, spacing);
  if (problem) throw new RangeError(problem);
  const { from, to } = span(name, walk, steps - kept, opts);
  if (prediction === 'epsilon' && walk.timesteps.slice(from, to).some((t) => train.alphasCumprod[t] === 0)) {
    throw new Error(
      `sampler '${name}' with zero terminal SNR starts at ᾱ = 0, where an epsilon-prediction model's output carries no image ` +
        `(x0 = (x − ε)/0): use a v-prediction model (Lin et al. 2023), 'leading' spacing, or one of the samplers that clamp the last ᾱ ` +
        samplerNames.filter((n) => SPECS[n as SamplerName].zeroSnr === 'clamped').join(', '),
    );
  }
  return { schedule: walk, from, to };
}

/**
 * The steps a run takes, [from, to): img2img's from, or SDXL's hand-off between two models as
 * diffusers computes it (StableDiffusionXLPipeline: the timesteps ≥ the cutoff for denoising_end;
 * StableDiffusionXLImg2ImgPipeline.get_timesteps: those below it for denoising_start), with the
 * cutoff round(1000·(1 − fraction)).
 */
function span(name: SamplerName, walk: Schedule, from: number, opts: Omit<SamplerOptions, 'generator'>): { from: number; to: number } {
  const { denoisingStart: start, denoisingEnd: end } = opts;
  let to = walk.timesteps.length;
  if (start === undefined && end === undefined) return { from, to };
  const cutoff = (fraction: number, what: string) => {
    if (typeof fraction !== 'number' || !(fraction > 0 && fraction < 1)) throw new RangeError(`${what} must be in (0, 1), got ${String(fraction)}`);
    return Math.round(TRAIN_STEPS - fraction * TRAIN_STEPS);
  };
  if (SPECS[name].evals !== 1) {
    throw new Error(`sampler '${name}' takes two model evaluations per step and cannot hand a run over mid-way (denoisingStart/denoisingEnd): use a first-order or multistep sampler such as euler, euler_a or dpmpp_2m`);
  }
  if (end !== undefined) {
    const c = cutoff(end, 'denoisingEnd');
    to = walk.timesteps.filter((t) => t >= c).length;
  }
  if (start !== undefined) {
    const c = cutoff(start, 'denoisingStart');
    from = walk.timesteps.length - walk.timesteps.filter((t) => t < c).length;
  }
  if (to <= from) {
    const at = [start !== undefined ? `starts at ${start}` : '', end !== undefined ? `ends at ${end}` : ''].filter(Boolean).join(' and ');
    throw new RangeError(`a hand-off that ${at} (denoisingStart/denoisingEnd, refiner.switchAt) leaves no step of ${walk.timesteps.length} to run: move it or raise steps`);
  }
  return { from, to };
}

/** latents noised to step k of a schedule: diffusers' add_noise (x0 + σ·n in VE space, α·x0 + σ_t·n in VP space). */
function noiseTo(spec: Spec, schedule: Schedule, latents: Tensor, noise: Tensor, k: number): Tensor {
  const sigma = schedule.sigmas[k];
  if (spec.space === 've') return latents.add(noise.mul(sigma));
  const { alpha, sigmaT } = vp(sigma);
  return latents.mul(alpha).add(noise.mul(sigmaT));
}

function makeSampler(name: SamplerName): Sampler {
  const spec: Spec = SPECS[name];
  const count = ({ from, to }: { from: number; to: number }): number => spec.evals * (to - from) - (spec.evals - 1);
  return {
    init(noise, opts) {
      const { schedule } = check(name, opts);
      return noise.mul(spec.space === 've' ? schedule.initSigma : 1);
    },
    addNoise(latents, noise, opts) {
      const { schedule, from } = check(name, opts);
      return noiseTo(spec, schedule, latents, noise, from);
    },
    async sample(model, x, opts) {
      const { schedule, from, to } = check(name, opts);
      const total = count({ from, to });
      let done = 0;
      const counted: Model = {
        ...model,
        output: async (input, t) => {
          opts.signal?.throwIfAborted();
          const out = await model.output(input, t);
          await opts.onStep?.(++done, total, () => model.x0(out, input, levelAt(schedule.train, t)));
          return out;
        },
      };
      const inpaint = opts.inpaint;
      const keep = inpaint?.mask.mul(-1).add(1);
      const blend = inpaint && keep ? (latents: Tensor, k: number) => noiseTo(spec, schedule, inpaint.latents, inpaint.noise, k).mul(keep).add(latents.mul(inpaint.mask)) : undefined;
      return spec.run(counted, x, { ...schedule, from, to, generator: opts.generator, ...(blend ? { blend } : {}) });
    },
    evaluations: (opts) => count(check(name, opts)),
  };
}

const SAMPLERS = Object.fromEntries(samplerNames.map((n) => [n, makeSampler(n as SamplerName)])) as Record<SamplerName, Sampler>;

const normalize = (s: string): string => s.trim().toLowerCase().replace(/\s+/g, ' ');

/** Every accepted name (lowercased): ours, ours + "_karras", A1111's display names with and without " Karras". */
const ALIASES: ReadonlyMap<string, { name: SamplerName; schedule?: ScheduleName }> = new Map(
  (Object.entries(SPECS) as [SamplerName, Spec][]).flatMap(([name, spec]) => {
    const plain = [name, spec.label, ...(name === 'pndm' ? ['PNDM'] : [])].map((a) => [normalize(a), { name }] as const);
    const karras = spec.karras
      ? [`${name}_karras`, `${spec.label} Karras`].map((a) => [normalize(a), { name, schedule: 'karras' as const }] as const)
      : [];
    return [...plain, ...karras];
  }),
);

export interface ResolvedSampler {
  sampler: Sampler;
  name: SamplerName;
  schedule: ScheduleName;
  /** The A1111 display name, e.g. "DPM++ 2M Karras" (what the infotext says). */
  label: string;
  /** Model evaluations per step: 2 for second-order samplers (A1111's step_multiplier). */
  evalsPerStep: 1 | 2;
  /** The timestep spacing of the sampler's diffusers class (used when none is given). */
  defaultSpacing: TimestepSpacing;
}

/**
 * Resolves a sampler by our name ('dpmpp_2m') or A1111's ('DPM++ 2M Karras'), case-insensitively.
 * A name that implies a schedule ("... Karras") conflicts with an explicit other `schedule`.
 */
export function getSampler(name: string, schedule?: string): ResolvedSampler {
  const hit = ALIASES.get(normalize(name));
  if (!hit) {
    const labels = Object.values(SPECS).flatMap((s: Spec) => (s.karras ? [s.label, `${s.label} Karras`] : [s.label]));
    throw new Error(`unknown sampler '${name}'. Valid names: ${samplerNames.join(', ')} (schedule 'default' or 'karras'), or A1111's: ${labels.map((l) => `"${l}"`).join(', ')}`);
  }
  scheduleName(schedule);
  if (hit.schedule && schedule !== undefined && schedule !== hit.schedule) {
    throw new Error(`sampler '${name}' already selects the ${hit.schedule} schedule; the schedule '${schedule}' contradicts it: pass '${hit.schedule}' or no schedule`);
  }
  const resolved = scheduleName(hit.schedule ?? schedule);
  if (resolved === 'karras' && !SPECS[hit.name].karras) throw noKarras(hit.name);
  const label = SPECS[hit.name].label;
  const { evals: evalsPerStep, spacing: defaultSpacing } = SPECS[hit.name];
  return { sampler: SAMPLERS[hit.name], schedule: resolved, name: hit.name, label: resolved === 'karras' ? `${label} Karras` : label, evalsPerStep, defaultSpacing };
}

/** A sampling setup to check: SamplerOptions without the run's generator and callbacks, any schedule name. */
export type SamplingSetup = Omit<SamplerOptions, 'generator' | 'schedule' | 'inpaint' | 'onStep' | 'signal'> & { schedule?: string };

/**
 * A whole sampling setup checked at once, before any work: the sampler by name (see getSampler),
 * then its schedule, spacing, zero terminal SNR, steps, strength and the model's prediction (the
 * errors sampler calls would give later).
 */
export function resolveSampler(name: string, setup: SamplingSetup): ResolvedSampler {
  const r = getSampler(name, setup.schedule);
  check(r.name, { ...setup, schedule: r.schedule });
  return r;
}
