// hwaksan studio: the page's logic. Plain JavaScript, no build step, no network but this server.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null, // GET /api/models
  model: null, // the selected entry of info.models
  op: "sample", // the selected tab
  run: null, // {id, source, op, total}
  lastImage: null, // data URL of the last finished grid (for "use current sample")
  steps: 0, // step events seen in the current run (read by the browser tests)
  inpaint: null, // {w, h, image: canvas, mask: Uint8Array, has: bool}
  edit: null, // {w, h, has: bool}
  painting: false,
};
window.studio = state;

// ---------------------------------------------------------------- messages

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(text) {
  $("status").textContent = text;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error("cannot reach the studio server (is it still running?)");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const why = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(response.status === 413 ? `upload refused: ${why}` : why);
  }
  return body;
}

// ---------------------------------------------------------------- models and settings

function option(select, value, text, title) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  if (title) o.title = title;
  select.appendChild(o);
  return o;
}

async function loadModels() {
  try {
    state.info = await api("/api/models");
  } catch (e) {
    showError(`could not list the models: ${e.message}`);
    return;
  }
  const info = state.info;
  const model = $("model");
  model.innerHTML = "";
  for (const m of info.models) option(model, m.id, m.name, m.path);
  const sampler = $("sampler");
  sampler.innerHTML = "";
  for (const s of info.samplers) {
    option(sampler, s.name, s.stochastic ? `${s.name} (stochastic)` : s.name, s.description);
  }
  const grid = $("grid");
  grid.innerHTML = "";
  for (const g of info.grids) {
    const name = typeof g === "string" ? g : g.name;
    option(grid, name, name, typeof g === "string" ? "" : g.description || "");
  }
  const limits = info.limits || {};
  if (limits.max_steps) $("steps").max = limits.max_steps;
  if (limits.max_batch) $("batch").max = limits.max_batch;
  if (!info.models.length) {
    showError("the server has no models");
    return;
  }
  selectModel(info.models[0].id);
}

function selectModel(id) {
  const m = state.info.models.find((x) => x.id === id);
  if (!m) return;
  state.model = m;
  $("model").value = m.id;
  $("model-description").textContent = m.description || "";
  const d = m.defaults || {};
  if (d.sampler) $("sampler").value = d.sampler;
  if (d.grid) $("grid").value = d.grid;
  if (d.steps) $("steps").value = d.steps;
  if (d.n) $("batch").value = d.n;
  if (m.kind === "points" && state.info.limits && state.info.limits.max_points) {
    $("batch").max = state.info.limits.max_points;
  } else if (state.info.limits && state.info.limits.max_batch) {
    $("batch").max = state.info.limits.max_batch;
  }
  samplerChanged();

  const label = $("label");
  label.innerHTML = "";
  option(label, "", "every class (one column each)");
  option(label, "uncond", "none (unconditional)");
  const classes = m.num_classes || 0;
  for (let k = 0; k < classes; k++) option(label, String(k), String(k));
  $("label-group").hidden = !classes;
  $("prompt-group").hidden = !m.text;
  guidanceAllowed();

  const ops = m.operations || ["sample"];
  for (const op of ["sample", "inpaint", "edit"]) {
    const tab = $(`tab-${op}`);
    tab.disabled = !ops.includes(op);
    tab.title = tab.disabled ? `${m.name} supports: ${ops.join(", ")}` : "";
  }
  if (!ops.includes(state.op)) selectTab("sample");

  const points = m.kind === "points";
  $("scatter-box").hidden = !points;
  $("preview-box").hidden = points;
  $("strip-box").hidden = points;
  $("download-csv").hidden = true;
  const [h, w] = imageSize(m);
  state.inpaint = { w, h, image: null, mask: new Uint8Array(w * h), has: false };
  state.edit = { w, h, has: false };
  for (const c of [$("mask-canvas"), $("edit-canvas")]) {
    c.width = w;
    c.height = h;
    c.getContext("2d").clearRect(0, 0, w, h);
  }
  $("brush").max = Math.max(1, Math.max(w, h));
  resetNfe();
}

// Guidance needs a condition (classes or text); RePaint takes none.
function guidanceAllowed() {
  const m = state.model;
  if (!m) return;
  const field = $("guidance");
  const conditioned = Boolean(m.num_classes) || Boolean(m.text);
  field.disabled = !conditioned || state.op === "inpaint";
  field.title = !conditioned
    ? `${m.name} has no condition to guide`
    : state.op === "inpaint"
      ? "inpainting takes no guidance"
      : "classifier-free guidance weight (empty: none)";
}

function imageSize(m) {
  const s = m.shape || [];
  return s.length === 3 ? [s[1], s[2]] : [8, 8];
}

function samplerChanged() {
  const s = state.info.samplers.find((x) => x.name === $("sampler").value);
  $("sampler-description").textContent = s ? s.description : "";
  resetNfe();
}

function resetNfe() {
  $("nfe").textContent = "—";
}

function selectTab(op) {
  state.op = op;
  for (const name of ["sample", "inpaint", "edit"]) {
    const tab = $(`tab-${name}`);
    tab.classList.toggle("active", name === op);
    tab.setAttribute("aria-selected", String(name === op));
    for (const el of document.querySelectorAll(`.op-${name}`)) el.hidden = name !== op;
  }
  guidanceAllowed();
}

function randomSeed() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  $("seed").value = a[0] % 2147483647;
}

// ---------------------------------------------------------------- runs

function intValue(id, name) {
  const v = Number($(id).value);
  if (!Number.isFinite(v) || !Number.isInteger(v)) throw new Error(`${name} must be a whole number`);
  return v;
}

function request(op) {
  const m = state.model;
  const guidance = $("guidance").value.trim();
  const label = $("label").value;
  const body = {
    model: m.id,
    operation: op,
    sampler: $("sampler").value,
    steps: intValue("steps", "steps"),
    grid: $("grid").value,
    seed: intValue("seed", "seed"),
    n: intValue("batch", "batch size"),
    guidance: guidance === "" || $("guidance").disabled ? null : Number(guidance),
    label: m.num_classes && /^\d+$/.test(label) ? Number(label) : null,
    // unconditional sampling; inpaint and edit take a class or none
    uncond: Boolean(m.num_classes) && label === "uncond" && op === "sample",
    prompt: m.text ? $("prompt").value : "",
    negative_prompt: m.text ? $("negative-prompt").value : "",
    options: {},
  };
  if (body.guidance !== null && !Number.isFinite(body.guidance)) throw new Error("guidance must be a number");
  if (op === "inpaint") {
    if (!state.inpaint.has) throw new Error("upload an image (or use the current sample) to inpaint first");
    body.image = state.inpaint.image.toDataURL("image/png");
    body.mask = maskDataUrl();
    body.jump = intValue("jump", "jump");
    body.resample = intValue("resample", "resample");
  } else if (op === "edit") {
    if (!state.edit.has) throw new Error("upload an image (or use the current sample) to edit first");
    body.image = $("edit-canvas").toDataURL("image/png");
    body.strength = Number($("strength").value);
  }
  return body;
}

function setBusy(busy) {
  for (const id of ["generate", "inpaint-run", "edit-run"]) $(id).disabled = busy;
  $("cancel").disabled = !busy;
}

// The images carry an alt text only while they show something (no broken-image text when empty).
function setImage(id, src) {
  const img = $(id);
  img.src = src;
  img.alt = img.dataset.alt || "";
}

function clearImage(id) {
  const img = $(id);
  img.removeAttribute("src");
  img.alt = "";
}

function clearResult() {
  clearImage("result");
  clearImage("strip");
  $("strip-box").hidden = state.model.kind === "points";
  const dl = $("download");
  dl.removeAttribute("href");
  dl.classList.add("disabled");
  dl.setAttribute("aria-disabled", "true");
  $("download-csv").hidden = true;
  $("timing").textContent = "";
  $("progress").value = 0;
}

async function startRun(op) {
  if (state.run) return;
  clearError();
  let body;
  try {
    body = request(op);
  } catch (e) {
    showError(e.message);
    return;
  }
  setBusy(true);
  setStatus("submitting…");
  let reply;
  try {
    reply = await api("/api/runs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    setBusy(false);
    setStatus("refused");
    showError(e.message);
    return;
  }
  clearResult();
  state.steps = 0;
  $("nfe").textContent = reply.nfe == null ? "—" : String(reply.nfe);
  $("command").value = reply.command || "";
  setStatus(queuedText(reply.position || 0));
  const source = new EventSource(`/api/runs/${encodeURIComponent(reply.run)}/events`);
  state.run = { id: reply.run, source, op, total: 0, kind: state.model.kind };
  const on = (name, handler) =>
    source.addEventListener(name, (e) => {
      if (!state.run || state.run.source !== source) return;
      let data = {};
      try {
        data = e.data ? JSON.parse(e.data) : {};
      } catch (err) {
        data = {};
      }
      handler(data);
    });
  on("queued", (d) => setStatus(queuedText(d.position || 0)));
  on("start", (d) => {
    state.run.total = d.total || 0;
    $("progress").max = Math.max(1, d.total || 1);
    $("progress").value = 0;
    setStatus(`running: 0 / ${d.total}`);
  });
  on("step", onStep);
  on("done", onDone);
  on("cancelled", () => finish("cancelled"));
  on("error", (d) => {
    showError(d.error || "the run failed");
    finish("failed");
  });
  source.onerror = () => {
    // A closed stream with no final event: the server went away or dropped the run.
    if (!state.run || state.run.source !== source) return;
    if (source.readyState === EventSource.CLOSED || source.readyState === EventSource.CONNECTING) {
      showError("lost the connection to the server during the run");
      finish("disconnected");
    }
  };
}

function queuedText(position) {
  return position > 0 ? `waiting: ${position} run(s) ahead` : "queued: starting…";
}

function onStep(d) {
  state.steps += 1;
  const total = d.total || state.run.total || 1;
  $("progress").max = total;
  $("progress").value = d.step;
  setStatus(`running: step ${d.step} / ${total}`);
  if (d.preview) setImage("preview", d.preview);
  if (d.points) drawScatter(d.points, null);
}

function onDone(d) {
  const run = state.run;
  $("progress").value = $("progress").max;
  if (d.image) {
    setImage("result", d.image);
    state.lastImage = d.image;
  }
  if (d.strip) setImage("strip", d.strip);
  $("strip-box").hidden = !d.strip;
  if (d.command) $("command").value = d.command;
  if (d.nfe != null) $("nfe").textContent = String(d.nfe);
  const dl = $("download");
  dl.href = `/api/runs/${encodeURIComponent(run.id)}/result.png`;
  dl.download = `hwaksan-${run.op}-${run.id}.png`;
  dl.classList.remove("disabled");
  dl.removeAttribute("aria-disabled");
  if (d.points) {
    drawScatter(d.points, d.trajectories || null);
    const csv = $("download-csv");
    csv.href = `/api/runs/${encodeURIComponent(run.id)}/points.csv`;
    csv.hidden = false;
  }
  const seconds = typeof d.seconds === "number" ? `${d.seconds.toFixed(2)} s` : "";
  $("timing").textContent = [seconds, d.nfe != null ? `${d.nfe} NFE` : ""].filter(Boolean).join(", ");
  finish(seconds ? `done in ${seconds}` : "done");
}

function finish(status) {
  if (state.run) state.run.source.close();
  state.run = null;
  setBusy(false);
  setStatus(status);
}

async function cancelRun() {
  const run = state.run;
  if (!run) return;
  setStatus("cancelling…");
  $("cancel").disabled = true;
  try {
    await api(`/api/runs/${encodeURIComponent(run.id)}/cancel`, { method: "POST" });
  } catch (e) {
    showError(`cancel failed: ${e.message}`);
    if (state.run === run) $("cancel").disabled = false;
  }
}

// ---------------------------------------------------------------- 2-D scatter

function drawScatter(points, trajectories) {
  const canvas = $("scatter");
  const ctx = canvas.getContext("2d");
  const W = canvas.width;
  const H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  const mags = [];
  for (const p of points) mags.push(Math.abs(p[0]), Math.abs(p[1]));
  mags.sort((a, b) => a - b);
  const q = mags.length ? mags[Math.floor(0.99 * (mags.length - 1))] : 1;
  const r = Math.max(1.5, q * 1.15);
  const X = (x) => ((x + r) / (2 * r)) * W;
  const Y = (y) => H - ((y + r) / (2 * r)) * H;
  // axes
  ctx.strokeStyle = "#e3e6eb";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(X(0), 0);
  ctx.lineTo(X(0), H);
  ctx.moveTo(0, Y(0));
  ctx.lineTo(W, Y(0));
  ctx.stroke();
  if (trajectories && trajectories.length > 1) {
    ctx.strokeStyle = "rgba(224, 49, 49, 0.25)";
    ctx.lineWidth = 1;
    const count = trajectories[0].length;
    for (let i = 0; i < count; i++) {
      ctx.beginPath();
      trajectories.forEach((step, k) => {
        const p = step[i];
        if (!p) return;
        if (k === 0) ctx.moveTo(X(p[0]), Y(p[1]));
        else ctx.lineTo(X(p[0]), Y(p[1]));
      });
      ctx.stroke();
    }
  }
  ctx.fillStyle = "rgba(59, 91, 219, 0.6)";
  for (const p of points) ctx.fillRect(X(p[0]) - 1.5, Y(p[1]) - 1.5, 3, 3);
  ctx.fillStyle = "#667085";
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText(`${points.length} points, axes ±${r.toFixed(1)}`, 8, 16);
}

// ---------------------------------------------------------------- images for inpaint / edit

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("not an image the browser can read"));
    img.src = url;
  });
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("could not read the file"));
    reader.readAsDataURL(file);
  });
}

// An uploaded file, checked against the server's limits, as an <img>.
async function uploadedImage(input) {
  const file = input.files && input.files[0];
  if (!file) return null;
  const limits = (state.info && state.info.limits) || {};
  if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {
    input.value = "";
    throw new Error(
      `upload refused: ${file.name} is ${file.size} bytes, more than the limit of ${limits.max_upload_bytes} bytes`,
    );
  }
  const img = await loadImage(await readFile(file));
  const side = Math.max(img.naturalWidth, img.naturalHeight);
  if (limits.max_image_side && side > limits.max_image_side) {
    input.value = "";
    throw new Error(
      `upload refused: ${file.name} is ${img.naturalWidth}x${img.naturalHeight}, larger than ${limits.max_image_side} pixels a side`,
    );
  }
  return img;
}

// The first image of the last result grid: find the cell size, gap and scale the grid was made with.
async function currentSample() {
  if (!state.lastImage) throw new Error("no sample yet: generate one first");
  const img = await loadImage(state.lastImage);
  const [h, w] = imageSize(state.model);
  const W = img.naturalWidth;
  const H = img.naturalHeight;
  // the server's grids have 2-pixel gaps, magnified with the pixels (the largest magnification
  // that fits both sides is the one); a bare image has none
  for (const g of [2, 0]) {
    for (let s = 64; s >= 1; s--) {
      const cw = (w + g) * s;
      const ch = (h + g) * s;
      if ((W - g * s) % cw === 0 && (H - g * s) % ch === 0 && W >= cw && H >= ch) {
        const c = document.createElement("canvas");
        c.width = w;
        c.height = h;
        const ctx = c.getContext("2d");
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(img, g * s, g * s, w * s, h * s, 0, 0, w, h);
        return c;
      }
    }
  }
  return img;
}

// Draw `source` on the canvas at the model's image size, opaque black behind it.
function fitInto(canvas, source) {
  const w = canvas.width;
  const h = canvas.height;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, w, h);
  ctx.drawImage(source, 0, 0, w, h);
  return [w, h];
}

function setInpaintImage(source) {
  const inp = state.inpaint;
  const image = document.createElement("canvas");
  image.width = inp.w;
  image.height = inp.h;
  const [w, h] = fitInto(image, source);
  inp.w = w;
  inp.h = h;
  inp.image = image;
  inp.mask = new Uint8Array(w * h);
  inp.has = true;
  const view = $("mask-canvas");
  view.width = w;
  view.height = h;
  $("brush").max = Math.max(1, Math.max(w, h));
  drawMask();
}

function drawMask() {
  const inp = state.inpaint;
  const view = $("mask-canvas");
  const ctx = view.getContext("2d");
  ctx.clearRect(0, 0, inp.w, inp.h);
  if (inp.image) ctx.drawImage(inp.image, 0, 0);
  ctx.fillStyle = "rgba(255, 64, 64, 0.7)";
  for (let y = 0; y < inp.h; y++) {
    for (let x = 0; x < inp.w; x++) if (inp.mask[y * inp.w + x]) ctx.fillRect(x, y, 1, 1);
  }
}

function paintAt(event) {
  const inp = state.inpaint;
  if (!inp || !inp.has) return;
  const rect = $("mask-canvas").getBoundingClientRect();
  const cx = ((event.clientX - rect.left) / rect.width) * inp.w;
  const cy = ((event.clientY - rect.top) / rect.height) * inp.h;
  const radius = Number($("brush").value) / 2;
  for (let y = Math.floor(cy - radius); y <= Math.ceil(cy + radius); y++) {
    for (let x = Math.floor(cx - radius); x <= Math.ceil(cx + radius); x++) {
      if (x < 0 || y < 0 || x >= inp.w || y >= inp.h) continue;
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      if (dx * dx + dy * dy <= Math.max(radius * radius, 0.5)) inp.mask[y * inp.w + x] = 1;
    }
  }
  drawMask();
}

// White = keep, black = fill (the painted pixels).
function maskDataUrl() {
  const inp = state.inpaint;
  const c = document.createElement("canvas");
  c.width = inp.w;
  c.height = inp.h;
  const ctx = c.getContext("2d");
  const data = ctx.createImageData(inp.w, inp.h);
  for (let i = 0; i < inp.w * inp.h; i++) {
    const v = inp.mask[i] ? 0 : 255;
    data.data[4 * i] = v;
    data.data[4 * i + 1] = v;
    data.data[4 * i + 2] = v;
    data.data[4 * i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return c.toDataURL("image/png");
}

function setEditImage(source) {
  const [w, h] = fitInto($("edit-canvas"), source);
  state.edit = { w, h, has: true };
}

async function guarded(fn) {
  clearError();
  try {
    await fn();
  } catch (e) {
    showError(e.message);
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("model").addEventListener("change", (e) => {
    clearError();
    selectModel(e.target.value);
  });
  $("sampler").addEventListener("change", samplerChanged);
  for (const id of ["grid", "steps", "guidance"]) $(id).addEventListener("input", resetNfe);
  $("dice").addEventListener("click", randomSeed);
  for (const op of ["sample", "inpaint", "edit"]) {
    $(`tab-${op}`).addEventListener("click", () => selectTab(op));
  }
  $("generate").addEventListener("click", () => startRun("sample"));
  $("inpaint-run").addEventListener("click", () => startRun("inpaint"));
  $("edit-run").addEventListener("click", () => startRun("edit"));
  $("cancel").addEventListener("click", cancelRun);
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && !state.run) startRun(state.op);
    if (e.key === "Escape" && state.run) cancelRun();
  });

  $("inpaint-upload").addEventListener("change", (e) =>
    guarded(async () => {
      const img = await uploadedImage(e.target);
      if (img) setInpaintImage(img);
    }),
  );
  $("inpaint-use-sample").addEventListener("click", () =>
    guarded(async () => setInpaintImage(await currentSample())),
  );
  $("edit-upload").addEventListener("change", (e) =>
    guarded(async () => {
      const img = await uploadedImage(e.target);
      if (img) setEditImage(img);
    }),
  );
  $("edit-use-sample").addEventListener("click", () => guarded(async () => setEditImage(await currentSample())));

  const canvas = $("mask-canvas");
  canvas.addEventListener("pointerdown", (e) => {
    state.painting = true;
    canvas.setPointerCapture(e.pointerId);
    paintAt(e);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (state.painting) paintAt(e);
  });
  const stop = () => {
    state.painting = false;
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("mask-clear").addEventListener("click", () => {
    if (!state.inpaint) return;
    state.inpaint.mask.fill(0);
    drawMask();
  });
  $("brush").addEventListener("input", (e) => {
    $("brush-value").textContent = e.target.value;
  });
  $("strength").addEventListener("input", (e) => {
    $("strength-value").textContent = Number(e.target.value).toFixed(2);
  });

  $("copy").addEventListener("click", async () => {
    const text = $("command").value;
    if (!text) return;
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      $("command").select();
      document.execCommand("copy");
    }
    $("copy").textContent = "Copied";
    setTimeout(() => {
      $("copy").textContent = "Copy";
    }, 1200);
  });
}

wire();
loadModels();
