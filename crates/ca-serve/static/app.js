// The page of `ca-serve` (and of its static export): the colony runs in
// this browser (WebGL2, colony/live.js) by default, or on the server by the
// "run on" switch (`?run=server`), and where the browser has no WebGL2.
//
// On the server: one WebSocket to a live colony. The server sends a JSON
// "hello", then frames (binary: 4-byte big-endian header length, JSON
// header, PNG strip of the views side by side) and JSON notices; the page
// sends JSON commands and images ('P' photo or 'V' video frame, then the
// JPEG or PNG bytes). In the browser nothing is sent: photos and camera
// frames go to the colony in the page.

import { LiveColony, PALETTE, CLASS_NAMES } from "./colony/live.js";
import { webgl2Available } from "./colony/webgl.js";

const $ = (id) => document.getElementById(id);
const VIEW_IDS = { overlay: "view-overlay", classes: "view-classes", state: "view-state", uncertainty: "view-uncertainty" };
const PHOTO = 80; // 'P'
const VIDEO = 86; // 'V'

let ws = null;
let hello = null;
let model = null;
// The step limit the colony runs under, as its frames last said (the box
// goes back to it when the server refuses a value).
let acceptedSteps = null;
// Seconds before a page refused for want of a colony slot tries again.
const BUSY_RETRY_S = 10;
let framesShown = 0;
let camera = null;
let cameraTimer = null;
let videoRate = { at: performance.now(), frames: 0 };
let lastDamage = 0;
// "browser" or "server": where the colony runs.
let runOn = null;
// The colony in the browser, while it runs there.
let live = null;
// The page's model list (models/index.json): names, default, server.
let index = null;

// Messages clear themselves after MESSAGE_MS, except the sticky ones that
// ask the user to do something (connect, reload).
const MESSAGE_MS = 6000;
let messageTimer = null;

function say(text, sticky = false) {
  clearTimeout(messageTimer);
  $("message").textContent = text;
  if (!sticky) messageTimer = setTimeout(() => ($("message").textContent = ""), MESSAGE_MS);
}

function send(command) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(command));
}

function sendImage(kind, blob) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(new Blob([Uint8Array.of(kind), blob]));
}

// Speed slider 0..100 to 1..1000 steps per second, logarithmically.
function speedOf(slider) {
  return Math.max(1, Math.round(Math.pow(1000, slider / 100)));
}

async function listModels() {
  if (!index.server) {
    const select = $("model");
    select.replaceChildren(...index.models.map((m) => new Option(m, m, m === index.default, m === index.default)));
    return index.default;
  }
  try {
    const r = await fetch("api/models");
    const body = await r.json();
    if (!r.ok) throw new Error(body.error);
    const select = $("model");
    // Each entry says what the model is: its size and its validation IoU.
    const details = Object.fromEntries((body.details || []).map((d) => [d.name, d]));
    const label = (m) => {
      const d = details[m];
      if (!d || d.params === undefined) return m;
      const iou = d.val_object == null ? "" : `, val object ${d.val_object.toFixed(2)} / boundary ${d.val_boundary.toFixed(2)}`;
      const levels = d.cascade ? `, coarse-to-fine ${d.cascade}` : "";
      return `${m} (${d.params.toLocaleString("en")} parameters${levels}${iou})`;
    };
    select.replaceChildren(...body.models.map((m) => new Option(label(m), m, m === body.default, m === body.default)));
    return body.default;
  } catch (e) {
    say("cannot list the models: " + e.message);
    return null;
  }
}

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (model) url.searchParams.set("model", model);
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onNotice(JSON.parse(ev.data)) : onFrame(ev.data));
  ws.onclose = async (ev) => {
    ws = null;
    if (ev.reason) {
      say(ev.reason, true);
      return;
    }
    try {
      const s = await (await fetch("api/status")).json();
      if (s.live_colonies >= s.max_colonies) {
        say(`server busy: all ${s.max_colonies} colonies are in use; trying again in ${BUSY_RETRY_S} s`, true);
        setTimeout(connect, BUSY_RETRY_S * 1000);
      } else {
        say("disconnected from the server; reload the page", true);
      }
    } catch (e) {
      say("the server is gone; restart it and reload the page", true);
    }
  };
}

function onNotice(msg) {
  if (runOn !== "server") return;
  if (msg.type === "hello") {
    hello = msg;
    $("steps").max = msg.max_steps;
    acceptedSteps = msg.steps;
    $("steps").value = acceptedSteps ?? "";
    $("model-name").textContent = msg.model;
    $("legend").replaceChildren(
      ...msg.legend.map((c) => {
        const s = document.createElement("span");
        const i = document.createElement("i");
        i.style.background = `rgb(${c.colour.join(",")})`;
        s.append(i, c.name);
        return s;
      })
    );
    for (const id of Object.values(VIEW_IDS)) {
      $(id).width = msg.view;
      $(id).height = msg.view;
    }
    say("connected: drop a photo or start the camera", true);
  } else if (msg.type === "error") {
    say(`error (${msg.status}): ${msg.error}`);
    // A refused step limit: the box shows the one still in force.
    if (msg.error.startsWith("steps ")) $("steps").value = acceptedSteps ?? "";
  }
}

// Frames per second shown, over the last second or so.
let frameRate = { at: performance.now(), frames: 0 };

async function onFrame(buffer) {
  if (runOn !== "server") return;
  const n = new DataView(buffer).getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const png = new Blob([new Uint8Array(buffer, 4 + n)], { type: "image/png" });
  const strip = await createImageBitmap(png);
  const v = header.view;
  header.views.forEach((name, i) => {
    const canvas = $(VIEW_IDS[name]);
    canvas.getContext("2d").drawImage(strip, i * v, 0, v, v, 0, 0, canvas.width, canvas.height);
  });
  strip.close();
  framesShown += 1;
  $("frames").textContent = framesShown;
  if (performance.now() - frameRate.at >= 1000) {
    const now = performance.now();
    $("fps").textContent = (((framesShown - frameRate.frames) * 1000) / (now - frameRate.at)).toFixed(1);
    frameRate = { at: now, frames: framesShown };
  }
  $("step").textContent = header.step;
  // The class map has settled (the server's Settling rule) since the last
  // photo, frame, restart or damage.
  $("settled").textContent =
    header.settled_after == null ? "" : ` (settled after ${header.settled_after} steps)`;
  $("sps").textContent = header.steps_per_second.toFixed(1);
  $("model-name").textContent = header.model;
  // "Pause" only while the colony steps: paused, or halted at the step
  // limit, it reads "Play" (and Play runs it on).
  $("play").textContent = header.running ? "Pause" : "Play";
  $("play").disabled = false;
  acceptedSteps = header.max_steps;
  if (document.activeElement !== $("steps")) $("steps").value = acceptedSteps ?? "";
  $("uncertainty-caption").textContent = header.uncertainty
    ? `uncertainty (${header.runs} runs, mean ${header.mean_variance.toFixed(4)})`
    : "uncertainty (off)";
  const now = performance.now();
  if (header.video_frames !== Number($("video-frames").textContent)) {
    $("video-frames").textContent = header.video_frames;
  }
  if (now - videoRate.at >= 1000) {
    const fps = ((header.video_frames - videoRate.frames) * 1000) / (now - videoRate.at);
    $("video-fps").textContent = Math.max(0, fps).toFixed(1);
    videoRate = { at: now, frames: header.video_frames };
  }
  document.body.dataset.frames = framesShown;
}

async function sendPhoto(file) {
  if (!file) return;
  if (runOn === "browser") {
    if (!live.colony) {
      say(`${file.name}: no model is loaded in this browser`, true);
      return;
    }
    try {
      await live.photo(file);
      say(`segmenting ${file.name} in this browser`);
    } catch (e) {
      say(`${file.name}: ${e.message}`, true);
    }
    return;
  }
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    // The reason the socket closed stays on screen; the photo went nowhere.
    if (!$("message").textContent) say(`${file.name} not sent: not connected to the server; reload the page`, true);
    return;
  }
  if (hello && file.size > hello.max_upload_bytes) {
    say(`${file.name}: ${file.size} bytes is over the limit of ${hello.max_upload_bytes} bytes`);
    return;
  }
  sendImage(PHOTO, file);
  say(`segmenting ${file.name}`);
}

function brushAt(ev) {
  const now = performance.now();
  if (now - lastDamage < 30) return;
  lastDamage = now;
  const r = ev.currentTarget.getBoundingClientRect();
  const x = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
  const y = Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height));
  const radius = Number($("brush").value) / 100;
  if (runOn === "browser") live.damage(x, y, radius);
  else send({ cmd: "damage", x, y, radius });
}

async function startCamera() {
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
  } catch (e) {
    say("no camera: " + e.message);
    return;
  }
  const video = $("video");
  video.srcObject = camera;
  await video.play();
  $("webcam-start").disabled = true;
  $("webcam-stop").disabled = false;
  scheduleCapture();
  say(runOn === "browser"
    ? "camera on: the frames go to the colony in this page, never over the network"
    : "camera on: the colony keeps its state across frames");
}

function scheduleCapture() {
  clearInterval(cameraTimer);
  if (!camera) return;
  cameraTimer = setInterval(captureFrame, 1000 / Number($("webcam-rate").value));
}

function captureFrame() {
  const video = $("video");
  if (runOn === "browser") {
    live.frame(video);
    return;
  }
  if (!ws || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > 256 * 1024 || !video.videoWidth) return;
  const canvas = $("capture");
  const side = Math.min(video.videoWidth, video.videoHeight);
  const sx = (video.videoWidth - side) / 2;
  const sy = (video.videoHeight - side) / 2;
  canvas.getContext("2d").drawImage(video, sx, sy, side, side, 0, 0, canvas.width, canvas.height);
  canvas.toBlob((blob) => blob && sendImage(VIDEO, blob), "image/jpeg", 0.85);
}

function stopCamera() {
  clearInterval(cameraTimer);
  cameraTimer = null;
  if (camera) camera.getTracks().forEach((t) => t.stop());
  camera = null;
  $("webcam-start").disabled = false;
  $("webcam-stop").disabled = true;
}

function stopCameraAndSay() {
  stopCamera();
  say("camera off");
}

function setMode(mode) {
  $("photo-input").hidden = mode !== "photo";
  $("webcam-input").hidden = mode !== "webcam";
  if (mode === "photo") stopCamera();
}

function wire() {
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    sendPhoto(ev.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (ev) => sendPhoto(ev.target.files[0]));
  $("mode-photo").addEventListener("change", () => setMode("photo"));
  $("mode-webcam").addEventListener("change", () => setMode("webcam"));
  $("webcam-start").addEventListener("click", startCamera);
  $("webcam-stop").addEventListener("click", stopCameraAndSay);
  $("webcam-rate").addEventListener("change", scheduleCapture);
  $("play").addEventListener("click", () => {
    const on = $("play").textContent === "Play";
    if (runOn === "browser") {
      if (on && live.limit !== null && live.sinceReset >= live.limit) live.sinceReset = 0;
      live.running = on;
    } else send({ cmd: "play", on });
  });
  $("restart").addEventListener("click", () => {
    if (runOn === "browser") {
      if (live.colony && live.image) live.reset();
    } else send({ cmd: "restart" });
  });
  $("speed").addEventListener("input", () => {
    const s = speedOf(Number($("speed").value));
    $("speed-value").textContent = s;
    if (runOn === "browser") live.speed = s;
    else send({ cmd: "speed", steps_per_second: s });
  });
  $("steps").addEventListener("change", () => {
    const v = $("steps").value.trim();
    const steps = v === "" ? null : Number(v);
    if (runOn !== "browser") {
      send({ cmd: "steps", steps });
    } else if (steps !== null && !(Number.isInteger(steps) && steps >= 1)) {
      say(`steps ${v}: must be a whole number of at least 1, or empty for no limit`);
      $("steps").value = live.limit ?? "";
    } else {
      live.limit = steps;
      live.sinceReset = 0;
    }
  });
  $("model").addEventListener("change", () => {
    model = $("model").value;
    if (runOn === "browser") loadInBrowser(model);
    else send({ cmd: "model", name: model });
  });
  $("uncertainty").addEventListener("change", () => {
    if (runOn === "browser") {
      live.uncertainty = $("uncertainty").checked;
      live.dirty = true;
      $("uncertainty-caption").textContent = live.uncertainty ? "uncertainty (entropy of the class probabilities)" : "uncertainty (off)";
    } else send({ cmd: "uncertainty", on: $("uncertainty").checked });
  });
  $("run-browser").addEventListener("change", () => switchTo("browser"));
  $("run-server").addEventListener("change", () => switchTo("server"));
  for (const id of ["view-overlay", "view-classes", "view-state"]) {
    const canvas = $(id);
    canvas.addEventListener("pointerdown", (ev) => {
      canvas.setPointerCapture(ev.pointerId);
      lastDamage = 0;
      brushAt(ev);
    });
    canvas.addEventListener("pointermove", (ev) => {
      if (canvas.hasPointerCapture(ev.pointerId)) brushAt(ev);
    });
  }
}

/** Loads `name` into the browser colony; a model the browser cannot run
 * (a bad file, a high-resolution model) is named with the reason. */
async function loadInBrowser(name) {
  try {
    await live.useModel(name);
    $("model-name").textContent = name;
    say(live.image ? `${name} loaded: restarted from noise` : `${name} runs in this browser: drop a photo or start the camera`, !live.image);
  } catch (e) {
    live.colony = null;
    $("model-name").textContent = "-";
    say(`cannot run ${name} in this browser: ${e.message}`, true);
  }
}

/** The browser colony's counters on the page. */
function showLive(stats) {
  if (runOn !== "browser") return;
  $("step").textContent = stats.step;
  $("settled").textContent = stats.settledAfter == null ? "" : ` (settled after ${stats.settledAfter} steps)`;
  $("sps").textContent = stats.sps.toFixed(1);
  $("fps").textContent = stats.fps.toFixed(1);
  $("frames").textContent = stats.frames;
  $("video-frames").textContent = stats.videoFrames;
  $("video-fps").textContent = stats.videoFps.toFixed(1);
  $("play").textContent = stats.running ? "Pause" : "Play";
  $("play").disabled = !live.image;
  document.body.dataset.frames = stats.frames;
}

function legend() {
  $("legend").replaceChildren(
    ...CLASS_NAMES.map((name, c) => {
      const s = document.createElement("span");
      const i = document.createElement("i");
      i.style.background = `rgb(${PALETTE[c].join(",")})`;
      s.append(i, name);
      return s;
    })
  );
}

/** Runs the colony in this browser or on the server from now on. */
async function switchTo(where) {
  if (where === runOn) return;
  stopCamera();
  if (runOn === "server" && ws) {
    ws.onclose = null;
    ws.close();
    ws = null;
  }
  if (runOn === "browser" && live) {
    live.stop();
    live = null;
  }
  runOn = where;
  $(`run-${where}`).checked = true;
  document.body.dataset.runOn = where;
  $("play").disabled = true;
  $("play").textContent = "Play";
  if (where === "browser") {
    legend();
    for (const id of Object.values(VIEW_IDS)) {
      $(id).width = 192;
      $(id).height = 192;
    }
    live = new LiveColony({
      overlay: $("view-overlay"),
      classes: $("view-classes"),
      state: $("view-state"),
      uncertainty: $("view-uncertainty"),
      settling: index.settling,
      onFrame: showLive,
    });
    live.speed = speedOf(Number($("speed").value));
    const v = $("steps").value.trim();
    live.limit = v === "" ? null : Number(v);
    live.uncertainty = $("uncertainty").checked;
    await loadInBrowser(model);
  } else {
    connect();
  }
}

async function start() {
  wire();
  try {
    const r = await fetch("models/index.json");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    index = await r.json();
  } catch (e) {
    say(`cannot list the models (models/index.json): ${e.message}`, true);
    return;
  }
  const webgl = webgl2Available();
  $("run-browser").disabled = !webgl;
  $("run-server").disabled = !index.server;
  $("run-note").textContent = !webgl
    ? "(this browser has no WebGL2 with float textures: the colony runs on the server)"
    : index.server ? "" : "(a static page: no server)";
  model = await listModels();
  const asked = new URLSearchParams(location.search).get("run");
  if (webgl && !(asked === "server" && index.server)) {
    await switchTo("browser");
  } else if (index.server) {
    await switchTo("server");
  } else {
    say("this browser has no WebGL2 with float textures, and this static page has no server to run the colony", true);
  }
}

start();
