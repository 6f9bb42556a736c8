/*
 * vidgate playground: paste a key, pick a model, describe a video, watch it render, play it.
 *
 * Talks only to this page's own origin (relative URLs, a strict CSP on the page): the key kept in
 * localStorage is never sent anywhere else. Stored files need `Authorization: Bearer`, which a
 * <video src> cannot send, so thumbnails and videos are fetched with the header and shown as blob: URLs.
 *
 * Unfinished videos are refreshed one by one (GET /v1/videos/{id}, at the pace the server suggests) while there
 * are at most POLL_ONE_BY_ONE of them; with more, one list request a round (GET /v1/videos?limit=100, newest first)
 * refreshes them all, so 200 videos in flight cost one request a round, not 200.
 *
 * Stable hooks (used by tests/test_playground.py; keep them when restyling):
 *   #connection-banner   shown while vidgate cannot be reached; hidden again once it answers
 *   #api-key #save-key   key input and its submit button (form #key-form); #key-error (data-testid="key-error")
 *   #key-saved           shown once a key is accepted: #key-masked, #change-key, #forget-key, #cancel-key
 *   #create-form         the new-video form; its controls sit in fieldset #create-fields (disabled until a key works)
 *     #model #prompt #size #seconds #audio (switch, shown when the model has audio)
 *     #mode                radio group; inputs are input[name="mode"] with value t2v | i2v | kf2v
 *     #custom-size         #size-width / #size-height, shown when #size is "custom" (models taking any size)
 *     #first-frame #last-frame   image pickers (i2v: first only; kf2v: both)
 *     #error-<field>       the server's message next to a field (model, prompt, size, seconds, first-frame,
 *                          last-frame, audio); #form-error for anything not tied to a field
 *     #submit
 *   #refresh, #video-count, #list-status, #video-list
 *   li[data-testid="video-card"][data-video-id][data-status][data-progress], with inside:
 *     [data-testid=progress] (role=progressbar, aria-valuenow 0-100), [data-testid=status], [data-testid=percent],
 *     [data-testid=prompt], [data-testid=meta], [data-testid=video-error], [data-testid=thumbnail] (img),
 *     [data-testid=play] (loads the MP4 and plays it), [data-testid=player] (<video controls>),
 *     [data-testid=download] (a[download]), [data-testid=delete] (click twice: arm, then confirm)
 */

const KEY_STORAGE = "vidgate.playground.key";
// At most this many unfinished videos are polled one by one; with more, a list request a round refreshes them.
const POLL_ONE_BY_ONE = 3;
const LIST_ROUND_MS = 1500;
const LIST_LIMIT = 100;
const MODEL_STORAGE = "vidgate.playground.model";
const MODES = [
  { id: "t2v", label: "Text" },
  { id: "i2v", label: "Image" },
  { id: "kf2v", label: "First + last" },
];
// Presets offered for models that take any even WxH (vidgate-local); "custom" opens width/height inputs.
const SIZE_PRESETS = ["1280x720", "832x480", "1920x1080", "720x1280", "480x832", "960x960", "640x360"];
// Which control shows a refusal whose `param` names a field.
const PARAM_FIELDS = {
  prompt: "prompt",
  model: "model",
  seconds: "seconds",
  size: "size",
  resolution: "size",
  "metadata.resolution": "size",
  input_reference: "first-frame",
  "metadata.audio": "audio",
  "metadata.audio_url": "audio",
};

// Fields that can carry a message; each has a control with that id and a #error-<field> next to it.
const FIELDS = ["prompt", "model", "seconds", "size", "first-frame", "last-frame", "audio"];

function fieldForParam(param) {
  if (!param) return null;
  if (PARAM_FIELDS[param]) return PARAM_FIELDS[param];
  // metadata.first_frame_url, metadata.img_url, metadata.last_frame_url and the like: the image pickers.
  if (param.startsWith("metadata.") && /last_frame|tail/.test(param)) return "last-frame";
  if (param.startsWith("metadata.") && /frame|img|image/.test(param)) return "first-frame";
  return null;
}

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const state = {
  key: null,
  models: [],
  model: null,
  mode: "t2v",
  session: 0, // bumped whenever the key changes: late answers for an older key are dropped
  entries: new Map(), // video id -> { video, card, timer, polling, failures, removed, thumbUrl, videoUrl, ... }
  listLoaded: false,
  round: { timer: null, running: false, failures: 0 }, // the list refresh used while many videos are unfinished
};

/* ---------------------------------------------------------------- HTTP */

class ApiError extends Error {
  constructor(status, error, retryAfter) {
    super(error.message || `vidgate answered HTTP ${status}.`);
    this.status = status;
    this.param = error.param || null;
    this.code = error.code || null;
    this.retryAfter = retryAfter;
  }
}

class NetworkError extends Error {}

async function api(path, { method = "GET", body, key = state.key } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      body,
      cache: "no-store",
      headers: { Authorization: `Bearer ${key}` },
    });
  } catch (cause) {
    connection.lost();
    throw new NetworkError("vidgate could not be reached.", { cause });
  }
  connection.ok();
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // Not an OpenAI error body (a proxy page, say): the status alone will have to do.
    }
    throw new ApiError(response.status, error, response.headers.get("retry-after"));
  }
  return response;
}

const connection = {
  down: false,
  probing: false,
  lost() {
    if (this.down) return;
    this.down = true;
    $("connection-banner").hidden = false;
    this.probe();
  },
  ok() {
    if (!this.down) return;
    this.down = false;
    $("connection-banner").hidden = true;
    onReconnect();
  },
  async probe() {
    if (this.probing) return;
    this.probing = true;
    for (let attempt = 1; this.down; attempt += 1) {
      await sleep(Math.min(attempt, 5) * 1000);
      if (this.down && navigator.onLine) await this.check();
    }
    this.probing = false;
  },
  async check() {
    try {
      const response = await fetch("/healthz", { cache: "no-store" });
      if (response.ok) this.ok();
    } catch {
      // Still unreachable: the banner stays up and the probe tries again.
    }
  },
};

function onReconnect() {
  if (!state.key) {
    const stored = localStorage.getItem(KEY_STORAGE);
    if (stored) useKey(stored, { stored: true });
    return;
  }
  if (!state.models.length) loadModels().catch(backgroundError);
  if (!state.listLoaded) {
    loadVideos().catch(backgroundError);
    return;
  }
  planPolling({ now: true });
}

function backgroundError(err) {
  if (err instanceof ApiError && err.status === 401) {
    keyRejected(err);
  } else if (!(err instanceof NetworkError)) {
    setListStatus(`Could not load your videos: ${err.message}`);
  }
}

/* ---------------------------------------------------------------- the key */

function maskKey(key) {
  return key.length > 16 ? `${key.slice(0, 9)}…${key.slice(-4)}` : "•".repeat(key.length);
}

function showKeyForm({ cancellable = false } = {}) {
  $("key-form").hidden = false;
  $("key-saved").hidden = true;
  $("cancel-key").hidden = !cancellable;
  $("api-key").value = "";
  $("api-key").focus();
}

function showKeySaved(key = state.key) {
  $("key-form").hidden = true;
  $("key-saved").hidden = false;
  $("key-masked").textContent = maskKey(key);
  setKeyError("");
}

function setKeyError(message) {
  $("key-error").textContent = message;
  $("key-error").hidden = !message;
  $("api-key").toggleAttribute("aria-invalid", Boolean(message));
}

/** Check a key against /v1/models; only a key vidgate accepts is kept and used. */
async function useKey(key, { stored = false } = {}) {
  setKeyError("");
  $("save-key").disabled = true;
  let models;
  try {
    models = await (await api("/v1/models", { key })).json();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      if (stored) localStorage.removeItem(KEY_STORAGE);
      if (stored || !state.key) resetSession();
      // Keep what was typed, so a typo can be fixed in place.
      $("key-form").hidden = false;
      $("key-saved").hidden = true;
      $("cancel-key").hidden = !state.key;
      setKeyError(
        stored
          ? `vidgate refused the saved key: ${err.message} Paste a valid key.`
          : `vidgate refused this key: ${err.message}`,
      );
    } else if (err instanceof NetworkError) {
      setKeyError("vidgate could not be reached; the key will be checked again when it answers.");
    } else {
      setKeyError(`The key could not be checked: ${err.message}`);
    }
    return;
  } finally {
    $("save-key").disabled = false;
  }
  resetSession();
  state.key = key;
  localStorage.setItem(KEY_STORAGE, key);
  showKeySaved();
  setModels(models.data || []);
  $("refresh").disabled = false;
  loadVideos().catch(backgroundError);
}

function keyRejected(err) {
  localStorage.removeItem(KEY_STORAGE);
  resetSession();
  showKeyForm();
  setKeyError(`vidgate no longer accepts this key: ${err.message} Paste another one.`);
}

/** Forget everything tied to the current key: its videos, pollers, blobs and models. */
function resetSession() {
  state.session += 1;
  state.key = null;
  state.listLoaded = false;
  clearTimeout(state.round.timer);
  state.round = { timer: null, running: false, failures: 0 };
  for (const entry of [...state.entries.values()]) removeEntry(entry);
  setModels([]);
  $("refresh").disabled = true;
  setListStatus("Save an API key to see your videos.");
}

/* ---------------------------------------------------------------- models and the form */

async function loadModels() {
  const models = await (await api("/v1/models")).json();
  setModels(models.data || []);
}

function setModels(models) {
  state.models = models;
  const select = $("model");
  select.replaceChildren();
  const byProvider = new Map();
  for (const model of models) {
    if (!byProvider.has(model.owned_by)) byProvider.set(model.owned_by, []);
    byProvider.get(model.owned_by).push(model);
  }
  for (const [provider, group] of byProvider) {
    const optgroup = document.createElement("optgroup");
    optgroup.label = provider;
    for (const model of group) optgroup.append(new Option(model.id, model.id));
    select.append(optgroup);
  }
  $("create-fields").disabled = models.length === 0;
  if (!models.length) {
    state.model = null;
    select.append(new Option(state.key ? "No model available" : "Save an API key first", ""));
    for (const id of ["size", "seconds"]) $(id).replaceChildren(new Option("—", ""));
    $("model-help").textContent = state.key ? "This key may not use any model." : "";
    $("mode-field").hidden = true;
    $("first-frame-field").hidden = true;
    $("last-frame-field").hidden = true;
    $("custom-size").hidden = true;
    $("audio-field").hidden = true;
    return;
  }
  const remembered = localStorage.getItem(MODEL_STORAGE);
  const pick =
    models.find((m) => m.id === remembered) || models.find((m) => m.id === "vidgate-local") || models[0];
  select.value = pick.id;
  selectModel(pick);
}

function selectModel(model) {
  state.model = model;
  $("model-help").textContent = model.description || "";
  renderModes(model);
  renderSizes(model);
  renderSeconds(model);
  $("audio-field").hidden = !model.audio;
  if (!model.audio) $("audio").checked = false;
  clearErrors();
}

function renderModes(model) {
  const offered = MODES.filter((mode) => model.modes.includes(mode.id));
  if (!offered.some((mode) => mode.id === state.mode)) state.mode = offered[0]?.id || "t2v";
  const group = $("mode");
  group.replaceChildren();
  for (const mode of offered) {
    const label = document.createElement("label");
    label.className = "segment";
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "mode";
    input.value = mode.id;
    input.checked = mode.id === state.mode;
    label.append(input, document.createTextNode(mode.label));
    group.append(label);
  }
  $("mode-field").hidden = offered.length < 2;
  renderPickers();
}

function renderPickers() {
  const mode = state.mode;
  $("first-frame-field").hidden = mode === "t2v";
  $("last-frame-field").hidden = mode !== "kf2v";
  $("first-frame-label").textContent = mode === "kf2v" ? "First frame" : "Image";
}

function parseSize(text) {
  const match = /^(\d+)x(\d+)$/.exec(text || "");
  return match ? [Number(match[1]), Number(match[2])] : null;
}

function sizeLabel(text, tiers) {
  const dims = parseSize(text) || parseSize(tiers?.[text]);
  if (!dims) return text;
  const [w, h] = dims;
  const short = Math.min(w, h);
  const tier = short <= 480 ? "480P" : short <= 720 ? "720P" : "1080P";
  const shape = w > h ? "landscape" : w < h ? "portrait" : "square";
  return tiers?.[text] ? `${text} · ${w} × ${h}` : `${w} × ${h} · ${tier} ${shape}`;
}

function renderSizes(model) {
  const select = $("size");
  select.replaceChildren();
  const range = model.size_range;
  if (range) {
    const [low, high] = range;
    const fits = (s) => {
      const [w, h] = parseSize(s);
      return w >= low && h >= low && w <= high && h <= high;
    };
    const presets = SIZE_PRESETS.filter(fits);
    if (parseSize(model.default_size) && !presets.includes(model.default_size)) presets.unshift(model.default_size);
    for (const size of presets) select.append(new Option(sizeLabel(size), size));
    select.append(new Option("Custom size…", "custom"));
    $("size-range").textContent = `Even numbers, ${low}–${high} px per side.`;
    for (const id of ["size-width", "size-height"]) {
      $(id).min = String(low);
      $(id).max = String(high);
    }
  } else {
    for (const size of model.sizes) select.append(new Option(sizeLabel(size, model.tiers), size));
  }
  if ([...select.options].some((o) => o.value === model.default_size)) select.value = model.default_size;
  renderCustomSize();
}

function renderCustomSize() {
  $("custom-size").hidden = $("size").value !== "custom";
}

function renderSeconds(model) {
  const select = $("seconds");
  select.replaceChildren();
  for (const s of model.seconds) select.append(new Option(`${s} s`, s));
  select.value = model.default_seconds;
}

function chosenSize() {
  if ($("size").value !== "custom") return $("size").value;
  return `${$("size-width").value.trim()}x${$("size-height").value.trim()}`;
}

/* ---------------------------------------------------------------- errors in the form */

function fieldError(field, message) {
  const target = $(`error-${field}`);
  target.textContent = message;
  target.hidden = false;
  const control = $(field);
  control.setAttribute("aria-invalid", "true");
  if (field === "size" && $("size").value === "custom") {
    for (const id of ["size-width", "size-height"]) $(id).setAttribute("aria-invalid", "true");
  }
  return control;
}

function formError(message) {
  $("form-error").textContent = message;
  $("form-error").hidden = !message;
}

function clearErrors() {
  for (const field of FIELDS) clearFieldError(field);
  formError("");
}

function clearFieldError(field) {
  const target = $(`error-${field}`);
  target.textContent = "";
  target.hidden = true;
  $(field).removeAttribute("aria-invalid");
  if (field === "size") for (const id of ["size-width", "size-height"]) $(id).removeAttribute("aria-invalid");
}

function showSubmitError(err) {
  if (err instanceof NetworkError) {
    formError("vidgate could not be reached, so nothing was submitted. Try again once the connection is back.");
    return;
  }
  if (err.status === 401) {
    keyRejected(err);
    formError("vidgate refused the API key, so nothing was submitted.");
    return;
  }
  const field = err.status === 403 ? "model" : fieldForParam(err.param);
  if (field && !$(`error-${field}`).parentElement.closest("[hidden]")) {
    const control = fieldError(field, err.message);
    control.focus();
    return;
  }
  const wait = err.status === 429 && err.retryAfter ? ` Try again in ${err.retryAfter} s.` : "";
  formError(`${err.message}${wait}`);
}

/* ---------------------------------------------------------------- submitting */

function readDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const model = state.model;
  if (!model || !state.key) return;
  const prompt = $("prompt").value.trim();
  const first = $("first-frame").files[0];
  const last = $("last-frame").files[0];
  const mode = state.mode;
  const problems = [];
  if (!prompt) problems.push(["prompt", "Describe the video you want."]);
  if (mode !== "t2v" && !first) problems.push(["first-frame", mode === "kf2v" ? "Choose a first frame." : "Choose an image."]);
  if (mode === "kf2v" && !last) problems.push(["last-frame", "Choose a last frame."]);
  if (problems.length) {
    const controls = problems.map(([field, message]) => fieldError(field, message));
    controls[0].focus();
    return;
  }

  const body = new FormData();
  body.append("prompt", prompt);
  body.append("model", model.id);
  body.append("seconds", $("seconds").value);
  body.append("size", chosenSize());
  const metadata = {};
  const button = $("submit");
  button.disabled = true;
  button.textContent = "Submitting…";
  try {
    if (mode === "i2v") body.append("input_reference", first, first.name);
    if (mode === "kf2v") {
      // Keyframe models read both frames from metadata; one that lacks first_frame_url takes the upload.
      if (model.metadata_keys.includes("first_frame_url")) metadata.first_frame_url = await readDataUri(first);
      else body.append("input_reference", first, first.name);
      metadata.last_frame_url = await readDataUri(last);
    }
    if (model.audio && $("audio").checked) metadata.audio = true;
    if (Object.keys(metadata).length) body.append("metadata", JSON.stringify(metadata));
    const video = await (await api("/v1/videos", { method: "POST", body })).json();
    localStorage.setItem(MODEL_STORAGE, model.id);
    addVideos([video]);
  } catch (err) {
    showSubmitError(err);
  } finally {
    button.disabled = false;
    button.textContent = "Generate video";
  }
}

/* ---------------------------------------------------------------- the list of videos */

const isActive = (video) => video.status === "queued" || video.status === "in_progress";

function setListStatus(message) {
  $("list-status").textContent = message;
  $("list-status").hidden = !message;
}

function updateCount() {
  const count = state.entries.size;
  $("video-count").textContent = count ? String(count) : "";
  if (state.listLoaded && !count) setListStatus("No videos yet. Describe one and press Generate video.");
  else if (count) setListStatus("");
}

/** Every video of this key, newest first, page by page until has_more is false. */
async function loadVideos() {
  const session = state.session;
  if (!state.listLoaded) setListStatus("Loading your videos…");
  const videos = [];
  let after = null;
  do {
    const query = new URLSearchParams({ limit: "100" });
    if (after) query.set("after", after);
    const page = await (await api(`/v1/videos?${query}`)).json();
    if (session !== state.session) return;
    videos.push(...page.data);
    after = page.has_more && page.last_id ? page.last_id : null;
  } while (after);
  const seen = new Set(videos.map((video) => video.id));
  for (const entry of [...state.entries.values()]) {
    if (!seen.has(entry.video.id)) removeEntry(entry);
  }
  state.listLoaded = true;
  addVideos(videos);
}

/** Newer videos that appeared elsewhere (another tab, the CLI): the first page is enough. */
async function checkForNew() {
  if (!state.key || !state.listLoaded || connection.down || document.hidden) return;
  if (state.round.timer || state.round.running) return; // the list rounds already bring new videos in
  const session = state.session;
  const page = await (await api("/v1/videos?limit=20")).json();
  if (session !== state.session) return;
  const fresh = page.data.filter((video) => !state.entries.has(video.id));
  if (fresh.length) addVideos(fresh);
}

/** Add or update cards so the list shows `videos` (newest first) in that order from the top. */
function addVideos(videos) {
  const list = $("video-list");
  let anchor = list.firstElementChild;
  for (const video of videos) {
    let entry = state.entries.get(video.id);
    if (entry) {
      update(entry, video);
    } else {
      entry = createEntry(video);
    }
    // Keep the list in the server's order without moving cards that are already in place
    // (moving a <video> out of the document would stop it).
    if (entry.card === anchor) anchor = anchor.nextElementSibling;
    else list.insertBefore(entry.card, anchor);
  }
  updateCount();
  planPolling();
}

function createEntry(video) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  const entry = {
    video,
    card,
    timer: null,
    polling: false,
    failures: 0,
    removed: false,
    thumbUrl: null,
    videoUrl: null,
    playerShown: false,
  };
  card.dataset.videoId = video.id;
  card.querySelector("[data-testid=play]").addEventListener("click", () => play(entry));
  card.querySelector("[data-testid=download]").addEventListener("click", (event) => download(entry, event));
  card.querySelector("[data-testid=delete]").addEventListener("click", () => remove(entry));
  state.entries.set(video.id, entry);
  render(entry);
  if (video.status === "completed") visibility.observe(card);
  return entry;
}

const STATUS_TEXT = { queued: "Queued", in_progress: "Rendering", completed: "Ready", failed: "Failed" };
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

function when(seconds) {
  const ago = Date.now() / 1000 - seconds;
  if (ago < 45) return "just now";
  if (ago < 3600) return relative.format(-Math.round(ago / 60), "minute");
  if (ago < 86400) return relative.format(-Math.round(ago / 3600), "hour");
  return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function render(entry) {
  const { video, card } = entry;
  const q = (testid) => card.querySelector(`[data-testid=${testid}]`);
  const progress = video.status === "completed" ? 100 : Math.max(0, Math.min(100, video.progress || 0));
  card.dataset.status = video.status;
  card.dataset.progress = String(progress);
  const bar = q("progress");
  bar.setAttribute("aria-valuenow", String(progress));
  bar.setAttribute("aria-valuetext", `${STATUS_TEXT[video.status] || video.status}, ${progress}%`);
  bar.setAttribute("aria-label", `Progress of ${video.id}`);
  bar.firstElementChild.style.width = `${progress}%`;
  q("status").textContent = STATUS_TEXT[video.status] || video.status;
  q("percent").textContent = isActive(video) ? `${progress}%` : "";
  q("prompt").textContent = video.prompt || "(no prompt)";
  q("prompt").title = video.prompt || "";
  q("meta").textContent = `${video.model} · ${video.size.replace("x", " × ")} · ${video.seconds} s · ${when(video.created_at)}`;
  // A failed video says why, in the upstream's own words ("Vidu: CreationPolicyViolation ..."); the code is ours.
  const error = q("video-error");
  error.hidden = video.status !== "failed";
  error.textContent = video.status === "failed" ? video.error?.message || "The video failed." : "";
  error.title = video.status === "failed" && video.error?.code ? `Error code: ${video.error.code}` : "";
  const done = video.status === "completed";
  const mediaText = { queued: "Waiting to start", in_progress: `${progress}%`, failed: "Failed" };
  card.querySelector(".media-state").textContent = mediaText[video.status] || "";
  q("play").hidden = !done || entry.playerShown;
  q("play").querySelector(".visually-hidden").textContent = `Play ${video.id}`;
  q("player").setAttribute("aria-label", `Video: ${video.prompt || video.id}`);
  const link = q("download");
  link.hidden = !done;
  link.download = `${video.id}.mp4`;
  link.setAttribute("aria-label", `Download ${video.id}`);
  if (!link.href) link.href = `#${video.id}`;
  q("delete").setAttribute("aria-label", `Delete ${video.id}`);
}

function update(entry, video) {
  const wasDone = entry.video.status === "completed";
  entry.video = video;
  render(entry);
  if (!wasDone && video.status === "completed") visibility.observe(entry.card);
}

/* ---------------------------------------------------------------- live progress */

function pollAfter(response) {
  const hint = Number.parseInt(response.headers.get("openai-poll-after-ms") || "", 10);
  return Number.isFinite(hint) ? Math.max(100, Math.min(hint, 60000)) : 2000;
}

const activeEntries = () => [...state.entries.values()].filter((entry) => !entry.removed && isActive(entry.video));

/**
 * Decide how the unfinished videos are refreshed: each on its own while there are few, else one list request a
 * round. Called whenever the set of unfinished videos may have changed; `now` skips the wait (after a reconnect).
 */
function planPolling({ now = false, roundIn = LIST_ROUND_MS } = {}) {
  if (!state.key || connection.down) return;
  const active = activeEntries();
  if (active.length > POLL_ONE_BY_ONE) {
    for (const entry of active) {
      clearTimeout(entry.timer);
      entry.timer = null;
    }
    if (!state.round.running && (now || !state.round.timer)) scheduleRound(now ? 0 : roundIn);
    return;
  }
  clearTimeout(state.round.timer);
  state.round.timer = null;
  for (const entry of active) {
    if (entry.polling) continue;
    if (now || !entry.timer) schedulePoll(entry, now ? 0 : Math.random() * 200);
  }
}

function schedulePoll(entry, ms) {
  clearTimeout(entry.timer);
  entry.timer = setTimeout(() => poll(entry), ms);
}

async function poll(entry) {
  entry.timer = null;
  if (entry.removed || !isActive(entry.video)) return;
  const session = state.session;
  entry.polling = true;
  try {
    const response = await api(`/v1/videos/${encodeURIComponent(entry.video.id)}`);
    const video = await response.json();
    if (session !== state.session || entry.removed) return;
    entry.failures = 0;
    update(entry, video);
    const few = activeEntries().length <= POLL_ONE_BY_ONE;
    if (isActive(video) && few) schedulePoll(entry, pollAfter(response));
    else planPolling();
  } catch (err) {
    if (session !== state.session || entry.removed) return;
    if (err instanceof ApiError && err.status === 404) {
      removeEntry(entry);
      planPolling();
    } else if (err instanceof ApiError && err.status === 401) keyRejected(err);
    else if (err instanceof NetworkError) {
      // Wait for the connection to come back: onReconnect() wakes the polling again.
    } else {
      // A server hiccup: look again later, less and less often.
      entry.failures += 1;
      schedulePoll(entry, Math.min(30000, 1000 * 2 ** Math.min(entry.failures, 5)));
    }
  } finally {
    entry.polling = false;
  }
}

function scheduleRound(ms) {
  clearTimeout(state.round.timer);
  state.round.timer = setTimeout(refreshRound, ms);
}

/**
 * One round: read the list, newest first, and update every card on it (adding videos made elsewhere). A page
 * holds 100 videos; the next page is read only while an unfinished video has not been seen yet, and an unfinished
 * video missing from the whole list was deleted elsewhere.
 */
async function refreshRound() {
  state.round.timer = null;
  if (!state.key || connection.down) return;
  const session = state.session;
  const round = state.round;
  round.running = true;
  let next = LIST_ROUND_MS;
  try {
    const unseen = new Set(activeEntries().map((entry) => entry.video.id));
    const videos = [];
    let after = null;
    let whole = false;
    do {
      const query = new URLSearchParams({ limit: String(LIST_LIMIT) });
      if (after) query.set("after", after);
      const page = await (await api(`/v1/videos?${query}`)).json();
      if (session !== state.session) return;
      videos.push(...page.data);
      for (const video of page.data) unseen.delete(video.id);
      whole = !page.has_more;
      after = page.has_more && unseen.size && page.last_id ? page.last_id : null;
    } while (after);
    if (whole) {
      for (const id of unseen) {
        const gone = state.entries.get(id);
        if (gone) removeEntry(gone);
      }
    }
    round.failures = 0;
    round.running = false;
    addVideos(videos); // updates the cards, then plans the next round (or single polls, when few are left)
    return;
  } catch (err) {
    if (session !== state.session) return;
    if (err instanceof ApiError && err.status === 401) return keyRejected(err);
    if (err instanceof NetworkError) return; // onReconnect() starts the rounds again
    round.failures += 1;
    next = Math.min(30000, 1000 * 2 ** Math.min(round.failures, 5));
  } finally {
    round.running = false;
  }
  planPolling({ roundIn: next });
}

/* ---------------------------------------------------------------- thumbnails, playback, download */

async function fetchBlobUrl(entry, variant) {
  const session = state.session;
  const id = encodeURIComponent(entry.video.id);
  const response = await api(`/v1/videos/${id}/content?variant=${variant}`);
  const blob = await response.blob();
  if (session !== state.session || entry.removed) throw new Error("stale");
  return URL.createObjectURL(blob);
}

// Thumbnails load when their card scrolls into view, a few at a time.
const thumbQueue = [];
let thumbsLoading = 0;

const visibility = new IntersectionObserver(
  (items) => {
    for (const item of items) {
      if (!item.isIntersecting) continue;
      visibility.unobserve(item.target);
      const entry = state.entries.get(item.target.dataset.videoId);
      if (entry && !entry.thumbUrl) thumbQueue.push(entry);
    }
    pumpThumbs();
  },
  { rootMargin: "300px" },
);

function pumpThumbs() {
  while (thumbsLoading < 4 && thumbQueue.length) {
    const entry = thumbQueue.shift();
    if (entry.removed) continue;
    thumbsLoading += 1;
    loadThumb(entry).finally(() => {
      thumbsLoading -= 1;
      pumpThumbs();
    });
  }
}

async function loadThumb(entry) {
  try {
    entry.thumbUrl = await fetchBlobUrl(entry, "thumbnail");
  } catch {
    return; // no thumbnail (some upstreams give none): the play button still works
  }
  const img = entry.card.querySelector("[data-testid=thumbnail]");
  img.src = entry.thumbUrl;
  img.hidden = entry.playerShown;
  const player = entry.card.querySelector("[data-testid=player]");
  player.poster = entry.thumbUrl;
}

function loadVideo(entry) {
  if (!entry.videoPromise) {
    entry.videoPromise = fetchBlobUrl(entry, "video").then(
      (url) => {
        entry.videoUrl = url;
        entry.card.querySelector("[data-testid=download]").href = url;
        return url;
      },
      (err) => {
        entry.videoPromise = null;
        throw err;
      },
    );
  }
  return entry.videoPromise;
}

async function play(entry) {
  const { card } = entry;
  const button = card.querySelector("[data-testid=play]");
  button.disabled = true;
  card.classList.add("loading");
  try {
    const url = await loadVideo(entry);
    const player = card.querySelector("[data-testid=player]");
    player.src = url;
    player.controls = true;
    player.hidden = false;
    entry.playerShown = true;
    button.hidden = true;
    card.querySelector("[data-testid=thumbnail]").hidden = true;
    player.play().catch(() => {
      // Autoplay may be refused (no recent gesture); the controls are there to start it.
    });
  } catch (err) {
    cardNote(entry, err);
  } finally {
    button.disabled = false;
    card.classList.remove("loading");
  }
}

async function download(entry, event) {
  if (entry.videoUrl) return; // the link already points at the blob: let the browser save it
  event.preventDefault();
  try {
    await loadVideo(entry);
    entry.card.querySelector("[data-testid=download]").click();
  } catch (err) {
    cardNote(entry, err);
  }
}

function cardNote(entry, err) {
  if (err instanceof ApiError && err.status === 401) return keyRejected(err);
  if (err.message === "stale") return;
  const note = entry.card.querySelector("[data-testid=video-error]");
  note.hidden = false;
  note.textContent =
    err instanceof NetworkError ? "vidgate could not be reached. Try again once the connection is back." : err.message;
}

/* ---------------------------------------------------------------- delete */

async function remove(entry) {
  const button = entry.card.querySelector("[data-testid=delete]");
  if (!button.classList.contains("armed")) {
    button.classList.add("armed");
    button.textContent = "Confirm delete";
    entry.disarm = setTimeout(() => {
      button.classList.remove("armed");
      button.textContent = "Delete";
    }, 4000);
    return;
  }
  clearTimeout(entry.disarm);
  button.disabled = true;
  button.textContent = "Deleting…";
  try {
    await api(`/v1/videos/${encodeURIComponent(entry.video.id)}`, { method: "DELETE" });
    removeEntry(entry);
    planPolling();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      removeEntry(entry);
      planPolling();
      return;
    }
    button.disabled = false;
    button.classList.remove("armed");
    button.textContent = "Delete";
    cardNote(entry, err);
  }
}

function removeEntry(entry) {
  entry.removed = true;
  clearTimeout(entry.timer);
  clearTimeout(entry.disarm);
  visibility.unobserve(entry.card);
  const player = entry.card.querySelector("[data-testid=player]");
  player.pause();
  player.removeAttribute("src");
  for (const url of [entry.thumbUrl, entry.videoUrl]) if (url) URL.revokeObjectURL(url);
  entry.card.remove();
  state.entries.delete(entry.video.id);
  updateCount();
}

/* ---------------------------------------------------------------- wiring */

function previewImage(input, preview) {
  if (preview.src) URL.revokeObjectURL(preview.src);
  const file = input.files[0];
  preview.hidden = !file;
  if (file) {
    preview.src = URL.createObjectURL(file);
    preview.alt = `Preview of ${file.name}`;
  } else {
    preview.removeAttribute("src");
  }
}

function wire() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      setKeyError("Paste a key first (it starts with sk-vg-).");
      return;
    }
    if (!/^[\x21-\x7e]+$/.test(key)) {
      // fetch() refuses such a header outright; say so instead of reporting a lost connection.
      setKeyError("A vidgate key is one word of plain ASCII characters; check what was pasted.");
      return;
    }
    useKey(key);
  });
  $("change-key").addEventListener("click", () => showKeyForm({ cancellable: true }));
  $("cancel-key").addEventListener("click", () => {
    setKeyError("");
    if (state.key) showKeySaved();
  });
  $("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    resetSession();
    showKeyForm();
  });

  $("create-form").addEventListener("submit", submit);
  $("model").addEventListener("change", () => {
    const model = state.models.find((m) => m.id === $("model").value);
    if (model) selectModel(model);
  });
  $("mode").addEventListener("change", (event) => {
    state.mode = event.target.value;
    renderPickers();
    clearFieldError("first-frame");
    clearFieldError("last-frame");
  });
  $("size").addEventListener("change", () => {
    renderCustomSize();
    clearFieldError("size");
  });
  for (const [field, ids] of Object.entries({
    prompt: ["prompt"],
    seconds: ["seconds"],
    size: ["size-width", "size-height"],
    audio: ["audio"],
  })) {
    for (const id of ids) $(id).addEventListener("input", () => clearFieldError(field));
  }
  for (const name of ["first-frame", "last-frame"]) {
    $(name).addEventListener("change", () => {
      clearFieldError(name);
      previewImage($(name), $(`${name}-preview`));
    });
  }
  $("refresh").addEventListener("click", () => loadVideos().catch(backgroundError));

  window.addEventListener("offline", () => connection.lost());
  window.addEventListener("online", () => {
    if (connection.down) connection.check();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) checkForNew().catch(backgroundError);
  });
  setInterval(() => checkForNew().catch(backgroundError), 15000);
  setInterval(() => {
    for (const entry of state.entries.values()) render(entry);
  }, 60000);
}

wire();
const saved = localStorage.getItem(KEY_STORAGE);
if (saved) {
  showKeySaved(saved);
  useKey(saved, { stored: true });
} else {
  showKeyForm();
}
