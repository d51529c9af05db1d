// The sdtorch page: plain JS over the /sdapi/v1 API (no build step).
'use strict';

const $ = (id) => document.getElementById(id);
const api = (path, body) =>
  fetch(`/sdapi/v1/${path}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => {
    const json = await r.json().catch(() => null);
    if (!r.ok) {
      const detail = json && json.detail;
      throw new Error(typeof detail === 'string' ? detail : Array.isArray(detail) ? detail.map((d) => `${d.loc.slice(1).join('.')}: ${d.msg}`).join('\n') : `HTTP ${r.status}`);
    }
    return json;
  });

const mode = () => document.querySelector('input[name=mode]:checked').value;
let initImage = null; // data URL
let pngParams = null;
let schedulers = [];

async function init() {
  const [samplers, models, options] = await Promise.all([api('samplers'), api('sd-models'), api('options')]);
  schedulers = await api('schedulers');
  $('sampler').replaceChildren(...samplers.map((s) => new Option(s.name, s.name, s.name === 'Euler a', s.name === 'Euler a')));
  $('scheduler').replaceChildren(...schedulers.map((s) => new Option(s.label, s.name, s.name === 'automatic', s.name === 'automatic')));
  $('model').replaceChildren(...models.map((m) => new Option(m.title, m.title, false, m.title === options.sd_model_checkpoint)));
  $('model').onchange = () => api('options', { sd_model_checkpoint: $('model').value }).catch(showError);
}

function showError(e) {
  $('error').textContent = e.message;
  $('error').hidden = false;
}

// --- img2img: the init image and a mask drawn over it ---------------------------------------

for (const r of document.querySelectorAll('input[name=mode]')) r.onchange = () => ($('img2img').hidden = mode() !== 'img2img');

$('init').onchange = () => {
  const file = $('init').files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => loadInit(reader.result);
  reader.readAsDataURL(file);
};

function loadInit(dataUrl) {
  const img = new Image();
  img.onload = () => {
    initImage = dataUrl;
    for (const c of [$('image-canvas'), $('mask-canvas')]) {
      c.width = img.width;
      c.height = img.height;
    }
    $('image-canvas').getContext('2d').drawImage(img, 0, 0);
    clearMask();
    $('width').value = img.width - (img.width % 8);
    $('height').value = img.height - (img.height % 8);
  };
  img.src = dataUrl;
}

function clearMask() {
  const ctx = $('mask-canvas').getContext('2d');
  ctx.clearRect(0, 0, $('mask-canvas').width, $('mask-canvas').height);
  $('mask-canvas').dataset.drawn = '';
}
$('clear-mask').onclick = clearMask;

{
  const canvas = $('mask-canvas');
  let drawing = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  const paint = (e) => {
    if (!drawing) return;
    const ctx = canvas.getContext('2d');
    const [x, y] = at(e);
    ctx.fillStyle = 'white';
    ctx.beginPath();
    ctx.arc(x, y, Number($('brush').value) / 2, 0, 2 * Math.PI);
    ctx.fill();
    canvas.dataset.drawn = '1';
  };
  canvas.onpointerdown = (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    paint(e);
  };
  canvas.onpointermove = paint;
  canvas.onpointerup = () => (drawing = false);
}

/** The drawn mask as A1111 takes it: white = repaint, on black. */
function maskDataUrl() {
  const src = $('mask-canvas');
  const out = document.createElement('canvas');
  out.width = src.width;
  out.height = src.height;
  const ctx = out.getContext('2d');
  ctx.fillStyle = 'black';
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(src, 0, 0);
  return out.toDataURL('image/png');
}

// --- generate, with live progress -----------------------------------------------------------

function request() {
  const body = {
    prompt: $('prompt').value,
    negative_prompt: $('negative').value,
    sampler_name: $('sampler').value,
    scheduler: $('scheduler').value,
    steps: Number($('steps').value),
    cfg_scale: Number($('cfg').value),
    width: Number($('width').value),
    height: Number($('height').value),
    seed: Number($('seed').value),
    batch_size: Number($('batch').value),
  };
  if (mode() === 'img2img') {
    if (!initImage) throw new Error('choose an init image first');
    Object.assign(body, { init_images: [initImage], denoising_strength: Number($('strength').value) });
    if ($('use-mask').checked && $('mask-canvas').dataset.drawn) Object.assign(body, { mask: maskDataUrl(), inpaint_full_res: false });
  }
  return body;
}

async function pollProgress(running) {
  while (running.on) {
    try {
      const p = await api('progress');
      if (!running.on) break;
      if (p.state.sampling_steps > 0) {
        $('bar').value = p.progress;
        $('progress-text').textContent = `step ${p.state.sampling_step}/${p.state.sampling_steps}` + (p.state.job_count > 1 ? `, batch ${p.state.job_no + 1}/${p.state.job_count}` : '') + `, ${Math.max(0, p.eta_relative).toFixed(1)} s left`;
      }
      if (p.current_image) {
        $('preview').src = `data:image/png;base64,${p.current_image}`;
        $('preview').hidden = false;
      }
    } catch {
      // the next poll may work
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

$('form').onsubmit = async (e) => {
  e.preventDefault();
  $('error').hidden = true;
  let body;
  try {
    body = request();
  } catch (err) {
    return showError(err);
  }
  $('generate').disabled = true;
  $('interrupt').disabled = false;
  $('progress').hidden = false;
  $('bar').value = 0;
  $('progress-text').textContent = 'queued';
  $('preview').hidden = true;
  const running = { on: true };
  const poll = pollProgress(running);
  try {
    const res = await api(mode(), body);
    const info = JSON.parse(res.info);
    res.images.forEach((b64, i) => addToGallery(b64, info.all_seeds[i], info.infotexts[i]));
    $('progress-text').textContent = `done: seed ${info.seed}`;
    $('bar').value = 1;
  } catch (err) {
    showError(err);
  } finally {
    running.on = false;
    await poll;
    $('generate').disabled = false;
    $('interrupt').disabled = true;
  }
};

$('interrupt').onclick = () => api('interrupt', {}).catch(showError);

function addToGallery(b64, seed, infotext) {
  const url = `data:image/png;base64,${b64}`;
  const fig = document.createElement('figure');
  const img = new Image();
  img.src = url;
  img.title = infotext || '';
  img.className = 'result';
  const a = document.createElement('a');
  a.href = url;
  a.download = `sdtorch-${seed}.png`;
  a.textContent = 'download';
  const use = document.createElement('button');
  use.type = 'button';
  use.textContent = 'to img2img';
  use.onclick = () => {
    document.querySelector('input[value=img2img]').checked = true;
    $('img2img').hidden = false;
    loadInit(url);
  };
  fig.append(img, a, use);
  $('gallery').prepend(fig);
}

// --- PNG info: drop a PNG ---------------------------------------------------------------------

{
  const zone = $('pnginfo-drop');
  zone.ondragover = (e) => {
    e.preventDefault();
    zone.classList.add('over');
  };
  zone.ondragleave = () => zone.classList.remove('over');
  zone.ondrop = (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) readPngInfo(file);
  };
}

function readPngInfo(file) {
  const reader = new FileReader();
  reader.onload = async () => {
    try {
      const res = await api('png-info', { image: reader.result });
      $('pnginfo').textContent = res.info || '(no generation parameters in this image)';
      pngParams = res.info ? res.parameters : null;
      $('use-pnginfo').hidden = !pngParams;
    } catch (err) {
      showError(err);
    }
  };
  reader.readAsDataURL(file);
}

$('use-pnginfo').onclick = () => {
  const p = pngParams;
  if (!p) return;
  $('prompt').value = p.Prompt ?? '';
  $('negative').value = p['Negative prompt'] ?? '';
  if (p.Steps) $('steps').value = p.Steps;
  if (p['CFG scale']) $('cfg').value = p['CFG scale'];
  if (p.Seed) $('seed').value = p.Seed;
  if (p['Size-1']) $('width').value = p['Size-1'];
  if (p['Size-2']) $('height').value = p['Size-2'];
  if (p.Sampler) {
    // "DPM++ 2M Karras" (a schedule type folded into the name), or "DPM++ 2M" with "Schedule type: Karras"
    const named = schedulers.flatMap((s) => [s.label, ...(s.aliases ?? [])].map((label) => ({ s, label }))).find(({ label }) => p.Sampler.endsWith(` ${label}`));
    $('sampler').value = named ? p.Sampler.slice(0, -named.label.length - 1) : p.Sampler;
    const typed = schedulers.find((s) => s.label.toLowerCase() === (p['Schedule type'] ?? '').toLowerCase());
    $('scheduler').value = (named?.s ?? typed)?.name ?? 'automatic';
  }
};

init().catch(showError);
