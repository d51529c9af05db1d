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
  lms,
  plms,
  predictedX0,
  unipc,
  veDenoiser,
  vp,
  vpDenoiser,
  type Denoiser,
  type EpsModel,
  type Sampler,
  type SamplerOptions,
  type Walk,
} from './samplers';
import { kdiffusionSchedule, leadingSchedule, multistepSchedule, plmsSchedule, TRAIN_STEPS, type Schedule, type ScheduleName } from './schedules';

export type { EpsModel, Sampler, SamplerOptions } from './samplers';

interface Spec {
  /** The A1111 display name. */
  label: string;
  /** The diffusers scheduler this reproduces. */
  diffusers: string;
  /** Whether diffusers offers use_karras_sigmas for it. */
  karras: boolean;
  /** 've': latents x0 + σ·ε, the model sees x/√(σ²+1); 'vp': α·x0 + σ_t·ε, the model sees x. */
  space: 've' | 'vp';
  /** Model evaluations per step (the last step of a two-stage method makes one). */
  evals: 1 | 2;
  schedule(steps: number, schedule: ScheduleName): Schedule;
  run(model: EpsModel, x: Tensor, walk: Walk): Promise<Tensor>;
}

const kSpec = (
  label: string,
  diffusers: string,
  run: (m: Denoiser, x: Tensor, w: Walk) => Promise<Tensor>,
  { evals = 1, karras = true, roundKarras = false }: { evals?: 1 | 2; karras?: boolean; roundKarras?: boolean } = {},
): Spec => ({
  label,
  diffusers,
  karras,
  space: 've',
  evals,
  schedule: (steps, schedule) => kdiffusionSchedule(steps, schedule, roundKarras),
  run: (m, x, w) => run(veDenoiser(m), x, w),
});

const multistepSpec = (label: string, diffusers: string, run: (m: Denoiser, x: Tensor, w: Walk) => Promise<Tensor>): Spec => ({
  label,
  diffusers,
  karras: true,
  space: 'vp',
  evals: 1,
  schedule: multistepSchedule,
  run: (m, x, w) => run(vpDenoiser(m), x, w),
});

const discreteSpec = (label: string, diffusers: string, schedule: (steps: number) => Schedule, run: Spec['run']): Spec => ({
  label,
  diffusers,
  karras: false,
  space: 'vp',
  evals: 1,
  schedule,
  run,
});

const SPECS = {
  ddpm: discreteSpec('DDPM', 'DDPMScheduler', leadingSchedule, ddpm),
  ddim: discreteSpec('DDIM', 'DDIMScheduler', leadingSchedule, ddim),
  pndm: discreteSpec('PLMS', 'PNDMScheduler', plmsSchedule, plms),
  euler: kSpec('Euler', 'EulerDiscreteScheduler', euler),
  euler_a: kSpec('Euler a', 'EulerAncestralDiscreteScheduler', eulerAncestral, { karras: false }),
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

/**
 * THE validator of sampling options: schedule, steps (1..1000, the training steps) and img2img
 * strength for a sampler. Returns the schedule to walk and the step img2img enters at.
 */
function check(name: SamplerName, opts: Pick<SamplerOptions, 'steps' | 'schedule' | 'strength'>): { schedule: Schedule; from: number } {
  const { steps, strength = 1 } = opts;
  const schedule = scheduleName(opts.schedule);
  if (schedule === 'karras' && !SPECS[name].karras) throw noKarras(name);
  if (!Number.isInteger(steps) || steps < 1 || steps > TRAIN_STEPS) {
    throw new RangeError(`steps must be an integer from 1 to ${TRAIN_STEPS}, got ${steps}`);
  }
  if (!(strength > 0 && strength <= 1)) throw new RangeError(`strength must be in (0, 1], got ${strength}`);
  // diffusers' img2img: init_timestep = min(int(steps·strength), steps); t_start = steps − init_timestep
  const kept = Math.min(Math.floor(steps * strength), steps);
  if (kept < 1) {
    throw new RangeError(`strength ${strength} leaves no step of ${steps} to run (int(steps·strength) = 0): raise strength or steps`);
  }
  return { schedule: SPECS[name].schedule(steps, schedule), from: steps - kept };
}

function makeSampler(name: SamplerName): Sampler {
  const spec: Spec = SPECS[name];
  const count = ({ schedule, from }: { schedule: Schedule; from: number }): number =>
    spec.evals * (schedule.timesteps.length - from) - (spec.evals - 1);
  return {
    init(noise, opts) {
      const { schedule } = check(name, opts);
      return noise.mul(spec.space === 've' ? schedule.sigmas[0] : 1);
    },
    addNoise(latents, noise, opts) {
      const { schedule, from } = check(name, opts);
      const sigma = schedule.sigmas[from];
      if (spec.space === 've') return latents.add(noise.mul(sigma));
      const { alpha, sigmaT } = vp(sigma);
      return latents.mul(alpha).add(noise.mul(sigmaT));
    },
    async sample(model, x, opts) {
      const { schedule, from } = check(name, opts);
      const total = count({ schedule, from });
      let done = 0;
      const counted: EpsModel = async (input, t) => {
        opts.signal?.throwIfAborted();
        const eps = await model(input, t);
        await opts.onStep?.(++done, total, () => predictedX0(input, t, eps));
        return eps;
      };
      return spec.run(counted, x, { ...schedule, from, generator: opts.generator });
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
  const evalsPerStep = SPECS[hit.name].evals;
  return { sampler: SAMPLERS[hit.name], schedule: resolved, name: hit.name, label: resolved === 'karras' ? `${label} Karras` : label, evalsPerStep };
}

/**
 * A whole sampling setup checked at once, before any work: the sampler by name (see getSampler),
 * then its schedule, steps and strength (the errors sampler calls would give later).
 */
export function resolveSampler(name: string, schedule: string | undefined, steps: number, strength?: number): ResolvedSampler {
  const r = getSampler(name, schedule);
  check(r.name, { steps, schedule: r.schedule, ...(strength !== undefined ? { strength } : {}) });
  return r;
}
