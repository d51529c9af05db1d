// Samplers by name: each registry row pairs a sampler function with its schedule, the diffusers
// class (or k-diffusion function) it reproduces and the schedules it takes; names, A1111 aliases
// (samplers and schedule types) and the ONE validator of sampling options (sampler, schedule,
// spacing, steps, strength) live here.
import type { Tensor } from '../tensor';
import {
  ddim,
  ddpm,
  deis,
  dpm2,
  dpm2Ancestral,
  dpmpp2m,
  dpmpp2mSde,
  dpmpp2sAncestral,
  dpmpp3mSde,
  dpmppSde,
  euler,
  eulerAncestral,
  heun,
  lcm,
  levelAt,
  lms,
  plms,
  unipc,
  veDenoiser,
  vp,
  vpDenoiser,
  type Denoiser,
  type Inpaint,
  type Model,
  type Prediction,
  type Sampler,
  type SamplerOptions,
  type Walk,
} from './samplers';
import {
  ddimSchedule,
  deisSchedule,
  kdiffusionSchedule,
  LCM_ORIGINAL_STEPS,
  lcmSchedule,
  multistepSchedule,
  noiseSchedule,
  plmsSchedule,
  SCHEDULE_NAMES,
  scheduleProblem,
  TIMESTEP_SPACINGS,
  TRAIN_STEPS,
  type NoiseSchedule,
  type Schedule,
  type ScheduleName,
  type TimestepSpacing,
} from './schedules';

export type { Inpaint, Model, NoiseLevel, Prediction, Sampler, SamplerOptions } from './samplers';
export type { ScheduleName, TimestepSpacing } from './schedules';
export { SCHEDULE_NAMES as scheduleNames } from './schedules';

interface Spec {
  /** The A1111 display name. */
  label: string;
  /** The reference it reproduces: a diffusers class, or k-diffusion's function where diffusers has none. */
  source: string;
  /** The schedules it walks; others are refused, saying `why`. */
  schedules: readonly ScheduleName[];
  why?: string;
  /**
   * Whether it takes zero terminal SNR (the diffusers class's rescale_betas_zero_snr; for the
   * k-diffusion samplers, that of the Euler schedule they walk), and how the last ᾱ is stored then:
   * 'zero' (DDIM, DDPM, LCM: ᾱ_999 = 0) or 'clamped' (the σ-based classes: 2^-24); false: no such option.
   */
  zeroSnr: false | 'zero' | 'clamped';
  /** The class's default timestep_spacing (from_config(SD 1.5 config) keeps it). */
  spacing: TimestepSpacing;
  /** 've': latents x0 + σ·ε, the model sees x/√(σ²+1); 'vp': α·x0 + σ_t·ε, the model sees x. */
  space: 've' | 'vp';
  /** Model evaluations per step (the last step of a two-stage method makes one). */
  evals: 1 | 2;
  /** The most steps it takes, and why (LCM: its distillation's 50). */
  maxSteps?: { steps: number; why: string };
  schedule(train: NoiseSchedule, steps: number, schedule: ScheduleName, spacing: TimestepSpacing): Schedule;
  run(model: Model, x: Tensor, walk: Walk): Promise<Tensor>;
}

/**
 * A sampler over σ (k-diffusion's form): it takes the σ list of any schedule, as A1111 lets every
 * k-diffusion sampler take every schedule type; the list is the one diffusers' Euler builds.
 */
const kSpec = (
  label: string,
  source: string,
  run: (m: Denoiser, x: Tensor, w: Walk) => Promise<Tensor>,
  { evals = 1, roundKarras = false, zeroSnr = false }: { evals?: 1 | 2; roundKarras?: boolean; zeroSnr?: boolean } = {},
): Spec => ({
  label,
  source,
  schedules: SCHEDULE_NAMES,
  zeroSnr: zeroSnr ? 'clamped' : false,
  spacing: 'linspace',
  space: 've',
  evals,
  schedule: (train, steps, schedule, spacing) => kdiffusionSchedule(train, steps, schedule, spacing, roundKarras),
  run: (m, x, w) => run(veDenoiser(m), x, w),
});

const multistepSpec = (
  label: string,
  source: string,
  run: (m: Denoiser, x: Tensor, w: Walk) => Promise<Tensor>,
  { schedule = multistepSchedule, zeroSnr = true }: { schedule?: Spec['schedule']; zeroSnr?: boolean } = {},
): Spec => ({
  label,
  source,
  schedules: SCHEDULE_NAMES,
  zeroSnr: zeroSnr ? 'clamped' : false,
  spacing: 'linspace',
  space: 'vp',
  evals: 1,
  schedule,
  run: (m, x, w) => run(vpDenoiser(m), x, w),
});

const discreteSpec = (label: string, source: string, zeroSnr: boolean, schedule: (train: NoiseSchedule, steps: number, spacing: TimestepSpacing) => Schedule, run: Spec['run']): Spec => ({
  label,
  source,
  schedules: ['default', 'sgm_uniform'],
  why: `${source} steps between whole training timesteps by ᾱ_t and takes no σ list`,
  zeroSnr: zeroSnr ? 'zero' : false,
  spacing: 'leading',
  space: 'vp',
  evals: 1,
  schedule: (train, steps, _schedule, spacing) => schedule(train, steps, spacing),
  run,
});

const SPECS = {
  ddpm: discreteSpec('DDPM', "diffusers' DDPMScheduler", true, ddimSchedule, ddpm),
  ddim: discreteSpec('DDIM', "diffusers' DDIMScheduler", true, ddimSchedule, ddim),
  pndm: discreteSpec('PLMS', "diffusers' PNDMScheduler", false, plmsSchedule, plms),
  euler: kSpec('Euler', "diffusers' EulerDiscreteScheduler", euler, { zeroSnr: true }),
  // σ spreads: k-diffusion's sample_euler_ancestral over them (the diffusers class has none)
  euler_a: kSpec('Euler a', "diffusers' EulerAncestralDiscreteScheduler", eulerAncestral, { zeroSnr: true }),
  heun: kSpec('Heun', "diffusers' HeunDiscreteScheduler", heun, { evals: 2 }),
  lms: kSpec('LMS', "diffusers' LMSDiscreteScheduler", lms),
  dpm2: kSpec('DPM2', "diffusers' KDPM2DiscreteScheduler", dpm2, { evals: 2, roundKarras: true }),
  dpm2_a: kSpec('DPM2 a', "diffusers' KDPM2AncestralDiscreteScheduler", dpm2Ancestral, { evals: 2, roundKarras: true }),
  dpmpp_2m: multistepSpec('DPM++ 2M', "diffusers' DPMSolverMultistepScheduler", dpmpp2m),
  dpmpp_2m_sde: multistepSpec('DPM++ 2M SDE', `diffusers' DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")`, dpmpp2mSde),
  unipc: multistepSpec('UniPC', "diffusers' UniPCMultistepScheduler", unipc),
  dpmpp_2s_a: kSpec('DPM++ 2S a', "k-diffusion's sample_dpmpp_2s_ancestral", dpmpp2sAncestral, { evals: 2, zeroSnr: true }),
  dpmpp_sde: kSpec('DPM++ SDE', "k-diffusion's sample_dpmpp_sde", dpmppSde, { evals: 2, zeroSnr: true }),
  dpmpp_3m_sde: kSpec('DPM++ 3M SDE', "k-diffusion's sample_dpmpp_3m_sde", dpmpp3mSde, { zeroSnr: true }),
  deis: multistepSpec('DEIS', "diffusers' DEISMultistepScheduler", deis, { schedule: deisSchedule, zeroSnr: false }),
  lcm: {
    label: 'LCM',
    source: "diffusers' LCMScheduler",
    schedules: ['default'],
    why: `diffusers' LCMScheduler walks timesteps of its ${LCM_ORIGINAL_STEPS} distillation steps, which no σ spread or spacing changes`,
    zeroSnr: 'zero',
    spacing: 'leading',
    space: 'vp',
    evals: 1,
    maxSteps: { steps: LCM_ORIGINAL_STEPS, why: `LCMScheduler picks its timesteps among the ${LCM_ORIGINAL_STEPS} of its distillation (original_inference_steps): LCM models want 4 to 8` },
    schedule: (train, steps) => lcmSchedule(train, steps),
    run: lcm,
  },
} satisfies Record<string, Spec>;

export type SamplerName = keyof typeof SPECS;
export const samplerNames: string[] = Object.keys(SPECS);

/** A1111's schedule type labels for the schedules there are ("Automatic" is 'default'). */
export type ScheduleLabel = 'Automatic' | 'Karras' | 'Exponential' | 'SGM Uniform' | 'Beta';

/** The schedules, with A1111's labels (its "Schedule type", /sdapi/v1/schedulers) and other spellings it accepts. */
export const SCHEDULES: readonly { name: ScheduleName; label: ScheduleLabel; aliases: readonly string[] }[] = [
  { name: 'default', label: 'Automatic', aliases: [] },
  { name: 'karras', label: 'Karras', aliases: [] },
  { name: 'exponential', label: 'Exponential', aliases: [] },
  { name: 'sgm_uniform', label: 'SGM Uniform', aliases: ['SGMUniform'] },
  { name: 'beta', label: 'Beta', aliases: [] },
];

const scheduleKey = (s: string): string => s.trim().toLowerCase().replace(/[\s_]+/g, ' ');
const SCHEDULE_KEYS: ReadonlyMap<string, ScheduleName> = new Map(SCHEDULES.flatMap((s) => [s.name, s.label, ...s.aliases].map((a) => [scheduleKey(a), s.name] as const)));
const scheduleLabel = (name: ScheduleName): string => SCHEDULES.find((s) => s.name === name)!.label;

/** A schedule by our name ('karras', 'sgm_uniform') or A1111's label ("Karras", "SGM Uniform", "Automatic"), case-insensitively. */
export function scheduleName(schedule: string | undefined): ScheduleName {
  if (schedule === undefined) return 'default';
  const hit = typeof schedule === 'string' ? SCHEDULE_KEYS.get(scheduleKey(schedule)) : undefined;
  if (hit) return hit;
  throw new (typeof schedule === 'string' ? RangeError : TypeError)(
    `unknown schedule '${String(schedule)}': use ${SCHEDULE_NAMES.map((n) => `'${n}'`).join(', ')} (or A1111's ${SCHEDULES.map((s) => `"${s.label}"`).join(', ')})`,
  );
}

const namesWith = (schedule: ScheduleName): string => samplerNames.filter((n) => (SPECS[n as SamplerName] as Spec).schedules.includes(schedule)).join(', ');

const noSchedule = (name: SamplerName, schedule: ScheduleName): RangeError => {
  const spec: Spec = SPECS[name];
  return new RangeError(
    `sampler '${name}' has no ${schedule} schedule (${spec.why ?? spec.source}): use schedule ${spec.schedules.map((s) => `'${s}'`).join(' or ')}, ` +
      `or one of the samplers that have it: ${namesWith(schedule)}`,
  );
};

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
  if (!spec.schedules.includes(schedule)) throw noSchedule(name, schedule);
  let spacing = opts.timestepSpacing ?? spec.spacing;
  if (!TIMESTEP_SPACINGS.includes(spacing)) throw new TypeError(`unknown timestep spacing '${String(spacing)}': use ${TIMESTEP_SPACINGS.map((s) => `'${s}'`).join(', ')}`);
  if (schedule === 'sgm_uniform') {
    if (spacing !== 'trailing' && opts.timestepSpacing !== undefined) {
      throw new RangeError(`schedule 'sgm_uniform' is the 'trailing' timestep spacing (diffusers' form of A1111's SGM Uniform); it contradicts '${spacing}': leave timestepSpacing out, or use schedule 'default'`);
    }
    spacing = 'trailing';
  }
  if (typeof zeroTerminalSnr !== 'boolean') throw new TypeError(`zeroTerminalSnr must be true or false, got ${String(zeroTerminalSnr)}`);
  if (!PREDICTIONS.includes(prediction)) throw new TypeError(`unknown prediction '${String(prediction)}': use 'epsilon' or 'v'`);
  if (zeroTerminalSnr && !spec.zeroSnr) {
    throw new RangeError(`sampler '${name}' cannot use zero terminal SNR (${spec.source} has no rescale_betas_zero_snr): use one of ${zeroSnrNames()}`);
  }
  if (!Number.isInteger(steps) || steps < 1 || steps > TRAIN_STEPS) {
    throw new RangeError(`steps must be an integer from 1 to ${TRAIN_STEPS}, got ${steps}`);
  }
  if (spec.maxSteps && steps > spec.maxSteps.steps) throw new RangeError(`sampler '${name}' takes at most ${spec.maxSteps.steps} steps, got ${steps} (${spec.maxSteps.why})`);
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
    throw new RangeError(
      `sampler '${name}' with zero terminal SNR starts at ᾱ = 0, where an epsilon-prediction model's output carries no image ` +
        `(x0 = (x − ε)/0): use a v-prediction model (Lin et al. 2023)${name === 'lcm' ? '' : ", 'leading' spacing"}, or one of the samplers that clamp the last ᾱ: ` +
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
    throw new RangeError(`sampler '${name}' takes two model evaluations per step and cannot hand a run over mid-way (denoisingStart/denoisingEnd): use a first-order or multistep sampler such as euler, euler_a or dpmpp_2m`);
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

/**
 * Inpainting: latents after the update to step k with the unmasked part put back at that level, or
 * after the last step as they are (DEIS's walk ends at σ_min, not 0; diffusers keeps the clean ones).
 */
function blender(spec: Spec, schedule: Schedule, { latents, noise, mask }: Inpaint): (x: Tensor, k: number) => Tensor {
  const kept = mask.mul(-1).add(1);
  return (x, k) => (k < schedule.timesteps.length ? noiseTo(spec, schedule, latents, noise, k) : latents).mul(kept).add(x.mul(mask));
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
      const blend = opts.inpaint ? blender(spec, schedule, opts.inpaint) : undefined;
      return spec.run(counted, x, { ...schedule, from, to, generator: opts.generator, ...(blend ? { blend } : {}) });
    },
    evaluations: (opts) => count(check(name, opts)),
  };
}

const SAMPLERS = Object.fromEntries(samplerNames.map((n) => [n, makeSampler(n as SamplerName)])) as Record<SamplerName, Sampler>;

const normalize = (s: string): string => s.trim().toLowerCase().replace(/\s+/g, ' ');

/**
 * Every accepted name (lowercased): ours, ours + "_<schedule>", A1111's display names alone and
 * followed by a schedule type's label, as A1111 1.9+ reads them ("DPM++ 2M Karras", "Euler a SGM Uniform").
 */
const ALIASES: ReadonlyMap<string, { name: SamplerName; schedule?: ScheduleName }> = new Map(
  (Object.entries(SPECS) as [SamplerName, Spec][]).flatMap(([name, spec]) => {
    const plain = [name, spec.label, ...(name === 'pndm' ? ['PNDM'] : [])].map((a) => [normalize(a), { name }] as const);
    // every schedule, also those the sampler refuses: "LCM Karras" then gets the reason, not "unknown sampler"
    const scheduled = SCHEDULES.filter((s) => s.name !== 'default').flatMap((s) =>
      [`${name}_${s.name}`, ...[s.label, ...s.aliases].map((l) => `${spec.label} ${l}`)].map((a) => [normalize(a), { name, schedule: s.name }] as const),
    );
    return [...plain, ...scheduled];
  }),
);

export interface ResolvedSampler {
  sampler: Sampler;
  name: SamplerName;
  schedule: ScheduleName;
  /** The A1111 display name, schedule folded in as A1111 before 1.9 named it, e.g. "DPM++ 2M Karras" (what the infotext says). */
  label: string;
  /** Model evaluations per step: 2 for second-order samplers (A1111's step_multiplier). */
  evalsPerStep: 1 | 2;
  /** The timestep spacing walked when none is given: the sampler's diffusers class's ('trailing' with sgm_uniform). */
  defaultSpacing: TimestepSpacing;
}

/**
 * Resolves a sampler by our name ('dpmpp_2m') or A1111's ('DPM++ 2M Karras'), case-insensitively,
 * and a schedule by our name or A1111's label ("Karras", "SGM Uniform"). A name that implies a
 * schedule ("... Karras") conflicts with an explicit other `schedule`.
 */
export function getSampler(name: string, schedule?: string): ResolvedSampler {
  const hit = ALIASES.get(normalize(name));
  if (!hit) {
    const labels = Object.values(SPECS).map((s: Spec) => `"${s.label}"`);
    throw new RangeError(
      `unknown sampler '${name}'. Valid names: ${samplerNames.join(', ')} (schedule ${SCHEDULE_NAMES.map((n) => `'${n}'`).join(', ')}), ` +
        `or A1111's: ${labels.join(', ')}, each also followed by a schedule type it takes, as "DPM++ 2M Karras"`,
    );
  }
  const asked = schedule === undefined ? undefined : scheduleName(schedule);
  if (hit.schedule && asked !== undefined && asked !== hit.schedule) {
    throw new RangeError(`sampler '${name}' already selects the ${hit.schedule} schedule; the schedule '${schedule}' contradicts it: pass '${hit.schedule}' or no schedule`);
  }
  const resolved = hit.schedule ?? asked ?? 'default';
  const spec: Spec = SPECS[hit.name];
  if (!spec.schedules.includes(resolved)) throw noSchedule(hit.name, resolved);
  return {
    sampler: SAMPLERS[hit.name],
    schedule: resolved,
    name: hit.name,
    label: resolved === 'default' ? spec.label : `${spec.label} ${scheduleLabel(resolved)}`,
    evalsPerStep: spec.evals,
    defaultSpacing: resolved === 'sgm_uniform' ? 'trailing' : spec.spacing,
  };
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
