// salmap web page: plain JavaScript, no library, nothing fetched from outside.
// Maps arrive once as grey PNGs; colour and opacity are applied here, in the browser.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = { file: null, sample: "chelsea", tables: {}, diverging: [], methods: {}, shown: [] };

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

async function api(url, options = {}) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return { status: response.status, body };
}

// -- the photo --------------------------------------------------------------------------
function imageForm() {
  const form = new FormData();
  if (state.file) form.append("image", state.file);
  else form.append("sample", state.sample);
  return form;
}

function useFile(file) {
  if (!file) return;
  state.file = file;
  $("#thumb").src = URL.createObjectURL(file);
  $("#thumb").hidden = false;
  $("#source").textContent = `${file.name} (${Math.round(file.size / 1024)} KiB)`;
}

function useSample(name) {
  state.file = null;
  state.sample = name;
  $("#thumb").src = `/api/samples/${name}.png`;
  $("#thumb").hidden = false;
  $("#source").textContent = `bundled photo: ${name}`;
}

function setUpPicker() {
  const drop = $("#drop");
  $("#file").addEventListener("change", (event) => useFile(event.target.files[0]));
  $("#sample").addEventListener("change", (event) => useSample(event.target.value));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    useFile(event.dataTransfer.files[0]);
  });
  useSample($("#sample").value);
}

// -- drawing ----------------------------------------------------------------------------
function decodeTable(text) {
  const bytes = atob(text);
  const table = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) table[i] = bytes.charCodeAt(i);
  return table;
}

function loadPixels(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const context = canvas.getContext("2d");
      context.drawImage(image, 0, 0);
      resolve(context.getImageData(0, 0, canvas.width, canvas.height));
    };
    image.onerror = () => reject(new Error("cannot draw an image the server sent"));
    image.src = url;
  });
}

function colormapFor(item) {
  const chosen = $("#cmap").value;
  if (item.result.signed && !state.diverging.includes(chosen)) return state.tables.RdBu_r;
  return state.tables[chosen];
}

// The blend of salmap.viz.overlay: weight = opacity × (0.35 + 0.65 × strength).
function draw(item) {
  const table = colormapFor(item);
  const opacity = Number($("#opacity").value) / 100;
  const { map, photo } = item;
  const coloured = new ImageData(map.width, map.height);
  const blended = new ImageData(map.width, map.height);
  for (let p = 0; p < map.width * map.height; p++) {
    const value = map.data[4 * p];
    const strength = item.result.signed ? Math.abs(value - 127.5) / 127.5 : value / 255;
    const weight = opacity * (0.35 + 0.65 * strength);
    for (let c = 0; c < 3; c++) {
      const colour = table[3 * value + c];
      coloured.data[4 * p + c] = colour;
      blended.data[4 * p + c] = (1 - weight) * photo.data[4 * p + c] + weight * colour;
    }
    coloured.data[4 * p + 3] = blended.data[4 * p + 3] = 255;
  }
  item.canvases.map.getContext("2d").putImageData(coloured, 0, 0);
  item.canvases.overlay.getContext("2d").putImageData(blended, 0, 0);
  item.links.png.href = item.canvases.map.toDataURL("image/png");
}

function redraw() {
  state.shown.forEach(draw);
}

function panel(container, title) {
  const figure = document.createElement("figure");
  const canvas = document.createElement("canvas");
  canvas.className = title;
  const caption = document.createElement("figcaption");
  caption.textContent = title === "map" ? "saliency map" : title === "photo" ? "input" : "overlay";
  figure.append(canvas, caption);
  container.append(figure);
  return canvas;
}

function heading(result) {
  const parts = [result.method];
  if (result.label) parts.push(`${result.label} (${result.target}), p = ${result.score.toFixed(3)}`);
  parts.push(`${result.seconds.toFixed(2)} s`);
  return parts.join(" · ");
}

async function showResult(result, container) {
  const card = document.createElement("div");
  card.className = "result";
  card.innerHTML = `<h3></h3><div class="panels"></div><div class="downloads">
    <a class="download-png" download="${result.method}_map.png">map PNG</a>
    <a class="download-npy" download="${result.method}_map.npy" href="${result.npy}">map NPY</a>
    <a class="download-json" download="${result.method}.json">JSON</a></div>`;
  $("h3", card).textContent = heading(result);
  const [map, photo] = await Promise.all([loadPixels(result.map), loadPixels(result.image)]);
  const panels = $(".panels", card);
  const canvases = { map: panel(panels, "map"), photo: panel(panels, "photo"), overlay: panel(panels, "overlay") };
  for (const canvas of Object.values(canvases)) [canvas.width, canvas.height] = [map.width, map.height];
  canvases.photo.getContext("2d").putImageData(photo, 0, 0);
  if (result.scan_path) drawScanPath(canvases.photo, result, map.width / result.shape[1]);
  const { map: _omit, ...summary } = result;
  const json = new Blob([JSON.stringify(summary, null, 2)], { type: "application/json" });
  $(".download-json", card).href = URL.createObjectURL(json);
  const item = { result, map, photo, canvases, links: { png: $(".download-png", card) } };
  container.append(card);
  state.shown.push(item);
  draw(item);
}

function drawScanPath(canvas, result, scale) {
  const context = canvas.getContext("2d");
  context.strokeStyle = context.fillStyle = "#00e5ff";
  context.lineWidth = 2;
  context.font = `bold ${Math.max(12, canvas.width / 40)}px sans-serif`;
  context.beginPath();
  result.scan_path.forEach(([x, y], index) => (index ? context.lineTo : context.moveTo).call(context, x * scale, y * scale));
  context.stroke();
  result.scan_path.forEach(([x, y], index) => {
    context.beginPath();
    context.arc(x * scale, y * scale, Math.max(4, result.foa_radius * scale), 0, 2 * Math.PI);
    context.stroke();
    context.fillText(String(index + 1), x * scale + 4, y * scale - 4);
  });
}

function showPredictions(result) {
  const list = $("#predictions ol");
  list.innerHTML = "";
  for (const prediction of result.predictions) {
    const item = document.createElement("li");
    item.textContent = `${prediction.label} (${prediction.index}) ${(100 * prediction.probability).toFixed(1)} %`;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(120 * prediction.probability)}px`;
    item.append(bar);
    if (prediction.index === result.target) item.classList.add("chosen");
    item.addEventListener("click", () => {
      $("#target").value = prediction.label;
      $("#model-form").requestSubmit();
    });
    list.append(item);
  }
  $("#predictions").hidden = false;
}

// -- jobs -------------------------------------------------------------------------------
async function followJob(url) {
  const box = $("#job");
  box.hidden = false;
  $("#cancel").onclick = () => fetch(url, { method: "DELETE" });
  try {
    for (;;) {
      const { body: job } = await api(url);
      const { done, total, text } = job.progress;
      $("#job-progress").max = total || 1;
      if (total) $("#job-progress").value = done; else $("#job-progress").removeAttribute("value");
      $("#job-text").textContent = `${job.kind}: ${text || job.status}`;
      if (job.status === "done") return job.result;
      if (job.status === "failed") throw new Error(job.error);
      if (job.status === "cancelled") throw new Error("cancelled");
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  } finally {
    box.hidden = true;
  }
}

async function submit(url, form, button) {
  button.disabled = true;
  setStatus("working…");
  try {
    const { status, body } = await api(url, { method: "POST", body: form });
    const result = status === 202 ? await followJob(body.url) : body;
    setStatus("");
    return result;
  } catch (error) {
    setStatus(error.message, true);
    return null;
  } finally {
    button.disabled = false;
  }
}

// -- the tabs' forms --------------------------------------------------------------------
function chosenMethods() {
  return [...document.querySelectorAll("#methods input:checked")].map((box) => box.value);
}

function modelForm() {
  const form = imageForm();
  const methods = chosenMethods();
  form.append("method", methods.join(","));
  form.append("model", $("#model").value);
  form.append("target", $("#target").value);
  const taken = new Set(["reduction"]);
  for (const name of methods) Object.keys(state.methods[name].defaults).forEach((key) => taken.add(key));
  for (const field of $("#params").querySelectorAll("input, select")) {
    if (field.value && taken.has(field.name)) form.append(field.name, field.value);
  }
  return form;
}

async function explain(event) {
  event.preventDefault();
  if (!chosenMethods().length) return setStatus("choose a method", true);
  const answer = await submit("/api/explain", modelForm(), $("#run"));
  if (!answer) return;
  const results = answer.results || [answer];
  state.shown = [];
  const container = $("#results");
  container.innerHTML = "";
  container.classList.toggle("side", results.length > 1);
  showPredictions(results[0]);
  for (const result of results) await showResult(result, container);
}

async function staticSaliency(event) {
  event.preventDefault();
  const form = imageForm();
  for (const [key, value] of new FormData(event.target)) if (value) form.append(key, value);
  const answer = await submit("/api/static", form, $("button", event.target));
  if (!answer) return;
  state.shown = state.shown.filter((item) => !item.canvases.map.closest("#static-results"));
  $("#static-results").innerHTML = "";
  await showResult(answer, $("#static-results"));
}

async function motion(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  if (!$("#video").files.length) return setStatus("choose a video", true);
  for (const [key, value] of [...form]) if (!value) form.delete(key);
  const answer = await submit("/api/motion", form, $("button", event.target));
  if (!answer) return;
  $("#motion-results").innerHTML = `<video controls autoplay loop muted src="${answer.video}"></video>
    <p class="note">${answer.frames} frames at ${answer.fps} frames/s, ${answer.width}×${answer.height};
    brightest residual motion ${Math.max(...answer.peak_speed).toFixed(1)} px/frame.
    <a href="${answer.video}" download="motion.webm">download the video</a></p>`;
}

async function evaluate(event) {
  event.preventDefault();
  const form = imageForm();
  form.append("method", chosenMethods().join(","));
  form.append("model", $("#model").value);
  const metrics = [...event.target.querySelectorAll("input:checked")].map((box) => box.value);
  form.append("metrics", metrics.join(","));
  const answer = await submit("/api/evaluate", form, $("button", event.target));
  if (!answer) return;
  $("#evaluate-results").innerHTML = `<p><a href="${answer.report}" target="_blank">open the report in a new tab</a></p>
    <iframe src="${answer.report}" title="evaluation report"></iframe>`;
}

async function loadClasses() {
  const { body } = await api(`/api/models/${encodeURIComponent($("#model").value)}/classes`);
  const list = $("#classes");
  list.innerHTML = "";
  body.classes.forEach((name, index) => {
    const option = document.createElement("option");
    option.value = name;
    option.label = String(index);
    list.append(option);
  });
}

function setUpTabs() {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      document.querySelectorAll(".tab, .panel").forEach((node) => node.classList.remove("active"));
      tab.classList.add("active");
      $(`#tab-${tab.dataset.tab}`).classList.add("active");
    });
  }
}

async function start() {
  setUpTabs();
  setUpPicker();
  const [{ body: colormaps }, { body: methods }] = await Promise.all([api("/api/colormaps"), api("/api/methods")]);
  for (const [name, text] of Object.entries(colormaps.tables)) state.tables[name] = decodeTable(text);
  state.diverging = colormaps.diverging;
  for (const spec of methods.model) state.methods[spec.name] = spec;
  $("#model-form").addEventListener("submit", explain);
  $("#static-form").addEventListener("submit", staticSaliency);
  $("#motion-form").addEventListener("submit", motion);
  $("#evaluate-form").addEventListener("submit", evaluate);
  $("#model").addEventListener("change", loadClasses);
  $("#cmap").addEventListener("change", redraw);
  $("#opacity").addEventListener("input", redraw);
  await loadClasses();
  document.body.dataset.ready = "true";
}

start().catch((error) => setStatus(error.message, true));
