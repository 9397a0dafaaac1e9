// Orion live view. Plain JavaScript, no build step: served from the daemon.
//
// Frames, result messages and the room (occupancy, recent events) arrive on
// one server-sent event stream per camera (/api/live). Each frame is shown a little late (about the time its result
// takes), so that the boxes drawn over a frame come from that frame's result, or
// from the latest result before it, never from a later one. Controls are
// commands POSTed to /api/command: the daemon's control handler runs them, with
// the same validation and replies as over MQTT.
'use strict';

const $ = (id) => document.getElementById(id);
const svgNS = 'http://www.w3.org/2000/svg';

// A token given in the address is kept for this tab and taken out of the
// address bar (the server has set a cookie for the page's own GET requests).
const params = new URLSearchParams(location.search);
if (params.has('token')) {
  sessionStorage.setItem('orion_token', params.get('token'));
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + (rest ? '?' + rest : ''));
}
const token = sessionStorage.getItem('orion_token');
const authHeaders = token ? { 'X-Orion-Token': token } : {};

const state = {
  cameras: [],
  cam: null,
  showVideo: true,
  source: null,
  frames: [],      // {seq, arrived, bitmap}
  results: [],     // detection results, newest last
  delay: 300,      // ms a frame waits for its result
  shown: null,
  dirty: true,
  zones: [],
  zoneList: null,
  rois: [],
  mode: null,      // 'roi' | 'zone' | null
  drag: null,
  requests: 0,
  drawn: 0,
  room: null,      // {occupancy, events}: the camera's room as the daemon says
  candidates: [],  // person-shaped things that never move: an ignore zone?
  paused: false,   // inference paused: no boxes are drawn
  rateHz: 0,       // the inference rate: how old a result may be and still drawn
};
// For tests and the curious: what is on screen.
window.orionView = state;

async function getJson(path) {
  const r = await fetch(path, { headers: authHeaders, credentials: 'same-origin' });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function showReply(reply) {
  const el = $('reply');
  el.textContent = (reply.success ? '✓ ' : '✗ ') + (reply.message || '');
  el.className = reply.success ? 'ok' : 'error';
}

async function command(name, commandParams) {
  const body = { command: name, request_id: `ui-${Date.now()}-${++state.requests}` };
  if (commandParams !== undefined) body.params = commandParams;
  let reply;
  try {
    const r = await fetch(`/api/command?camera=${encodeURIComponent(state.cam.instance_id)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...authHeaders },
      credentials: 'same-origin',
      body: JSON.stringify(body),
    });
    reply = await r.json();
  } catch (e) {
    reply = { success: false, message: `no answer: ${e.message}` };
  }
  showReply(reply);
  pollStatus();
  return reply;
}

function escapeText(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

// ---- the live stream ----

function selectCamera(id) {
  const cam = state.cameras.find((c) => c.instance_id === id) || state.cameras[0];
  if (!cam) return;
  state.cam = cam;
  state.frames = [];
  state.results = [];
  state.shown = null;
  state.room = null;
  showRoom();
  state.dirty = true;
  const canvas = $('frame');
  canvas.width = cam.width;
  canvas.height = cam.height;
  $('view').style.aspectRatio = `${cam.width} / ${cam.height}`;
  $('overlay').setAttribute('viewBox', `0 0 ${cam.width} ${cam.height}`);
  $('overlay').setAttribute('preserveAspectRatio', 'none');
  if (state.source) state.source.close();
  const es = new EventSource(`/api/live?camera=${encodeURIComponent(cam.instance_id)}`);
  es.onopen = () => { $('link').textContent = 'live'; $('link').className = 'badge ok'; };
  es.onerror = () => { $('link').textContent = 'reconnecting'; $('link').className = 'badge bad'; };
  es.addEventListener('frame', onFrame);
  es.addEventListener('result', onResult);
  es.addEventListener('room', onRoom);
  state.source = es;
  pollStatus();
}

function onFrame(ev) {
  const f = JSON.parse(ev.data);
  const entry = { seq: f.seq, arrived: performance.now(), bitmap: null };
  // Privacy mode can be turned on and off while the page is open: each
  // frame says which (no picture at all in privacy mode).
  const privacy = f.privacy === true;
  if (privacy === state.showVideo) {
    state.showVideo = !privacy;
    $('privacy').hidden = !privacy;
    state.shown = null;
  }
  state.frames.push(entry);
  while (state.frames.length > 60) state.frames.shift();
  if (f.jpeg) {
    const bin = atob(f.jpeg);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    createImageBitmap(new Blob([bytes], { type: 'image/jpeg' }))
      .then((b) => { entry.bitmap = b; })
      .catch(() => {});
  }
}

function onResult(ev) {
  const r = JSON.parse(ev.data);
  if (!r.data || !Array.isArray(r.data.detections)) return;
  r.arrived = performance.now();
  state.results.push(r);
  while (state.results.length > 30) state.results.shift();
  const f = state.frames.find((x) => x.seq === r.frame_seq);
  if (f) {
    // Hold frames about as long as a result takes to arrive.
    const lag = r.arrived - f.arrived + 50;
    state.delay = Math.min(1500, Math.max(0, 0.7 * state.delay + 0.3 * lag));
  }
}

function onRoom(ev) {
  state.room = JSON.parse(ev.data);
  showRoom();
  state.dirty = true;
}

function clock(t) {
  const d = new Date(t);
  return isNaN(d) ? '' : d.toLocaleTimeString();
}

// Who is in the room: seen, and not seen (where and when last seen), and the
// recent events, newest first.
function showRoom() {
  const o = state.room && state.room.occupancy;
  let text = 'not decided yet';
  if (o && o.state) {
    const people = o.count === 1 ? '1 person' : `${o.count} people`;
    const unseen = (o.unseen_people || [])
      .map((p) => `#${p.track_id} not seen since ${clock(p.last_seen)}`)
      .join(', ');
    const said = o.occupied
      ? `occupied: ${people} (${o.seen} seen, ${o.unseen} not seen${unseen ? `: ${unseen}` : ''})`
      : 'empty';
    const how = o.state === 'watching' ? '' : ` · ${o.state === 'paused' ? 'paused' : 'not watching (stream or workers down)'}: last known`;
    text = `${said}${how}`;
  }
  $('presence').textContent = text;
  $('presence').className = o && o.state !== 'watching' ? 'stale' : '';
  const events = ((state.room && state.room.events) || []).slice().reverse();
  $('events').innerHTML = events
    .map((e) => {
      const what = [e.type, e.zone, e.track_id !== undefined ? `#${e.track_id}` : '', e.reason ? `(${e.reason})` : '']
        .filter(Boolean)
        .join(' ');
      return `<li><time>${escapeText(clock(e.timestamp))}</time> ${escapeText(what)}</li>`;
    })
    .join('');
}

function render() {
  if (!state.cam) return;
  const now = performance.now();
  let due = null;
  for (const f of state.frames) {
    if (now - f.arrived >= state.delay && (!state.showVideo || f.bitmap)) due = f;
  }
  if (due && due !== state.shown) {
    state.shown = due;
    state.frames = state.frames.filter((f) => f.seq >= due.seq);
    const ctx = $('frame').getContext('2d');
    if (state.showVideo && due.bitmap) {
      ctx.drawImage(due.bitmap, 0, 0, state.cam.width, state.cam.height);
    } else {
      ctx.fillStyle = '#555b63';
      ctx.fillRect(0, 0, state.cam.width, state.cam.height);
    }
    state.drawn += 1;
    state.dirty = true;
  }
  if (state.dirty) {
    state.dirty = false;
    drawOverlay();
  }
}

// The newest detection result computed on the shown frame or before it;
// none while inference is paused, and none older than a few result periods
// (the boxes of a person who has since left must not stay on the picture).
function resultFor(seq) {
  if (state.paused) return null;
  const period = state.rateHz > 0 ? 1000 / state.rateHz : 1000;
  const oldest = performance.now() - Math.max(3000, 2.5 * period);
  let best = null;
  for (const r of state.results) {
    if (r.arrived < oldest) continue;
    if (r.frame_seq <= seq && (!best || r.frame_seq > best.frame_seq)) best = r;
  }
  return best;
}

// The bones of a stick figure: pairs of COCO keypoint names.
const BONES = [
  ['left_shoulder', 'right_shoulder'], ['left_hip', 'right_hip'],
  ['left_shoulder', 'left_hip'], ['right_shoulder', 'right_hip'],
  ['left_shoulder', 'left_elbow'], ['left_elbow', 'left_wrist'],
  ['right_shoulder', 'right_elbow'], ['right_elbow', 'right_wrist'],
  ['left_hip', 'left_knee'], ['left_knee', 'left_ankle'],
  ['right_hip', 'right_knee'], ['right_knee', 'right_ankle'],
  ['nose', 'left_eye'], ['nose', 'right_eye'], ['left_eye', 'left_ear'], ['right_eye', 'right_ear'],
];
// Keypoints below this score are guesses: not drawn.
const SURE = 0.2;

// A detection's stick figure (SVG), from its keypoints; '' without them.
function skeleton(d) {
  if (!Array.isArray(d.keypoints)) return '';
  const at = {};
  for (const k of d.keypoints) if (k.score >= SURE) at[k.name] = k;
  const parts = [];
  for (const [a, b] of BONES) {
    if (at[a] && at[b]) parts.push(`<line class="bone" x1="${at[a].x}" y1="${at[a].y}" x2="${at[b].x}" y2="${at[b].y}"/>`);
  }
  for (const k of Object.values(at)) parts.push(`<circle class="joint" cx="${k.x}" cy="${k.y}" r="3"/>`);
  return `<g class="skeleton" data-track="${d.track_id ?? ''}">${parts.join('')}</g>`;
}

function rect(cls, x, y, w, h, attrs = '') {
  return `<rect class="${cls}" x="${x}" y="${y}" width="${w}" height="${h}" ${attrs}/>`;
}

function drawOverlay() {
  const { width: W, height: H } = state.cam;
  const parts = [];
  for (const z of state.zones) {
    const pts = z.polygon.map(([x, y]) => `${x * W},${y * H}`).join(' ');
    const cls = ['zone', z.ignore && 'ignore', z.rest && 'rest', z.exit && 'exit'].filter(Boolean).join(' ');
    parts.push(`<polygon class="${cls}" data-name="${escapeText(z.name)}" points="${pts}"/>`);
    const [lx, ly] = z.polygon[0];
    parts.push(`<text class="zone-label" x="${lx * W + 4}" y="${ly * H + 16}">${escapeText(z.name)}</text>`);
  }
  const res = state.shown ? resultFor(state.shown.seq) : null;
  const c = res && res.roi && res.roi.crop;
  if (c) parts.push(rect('crop', c.x, c.y, c.width, c.height, `data-source="${escapeText(res.roi.source)}"`));
  // Dashed, over the crop (which is the ROI itself while an ROI is set).
  for (const r of state.rois) {
    parts.push(rect('roi', r.x * W, r.y * H, r.width * W, r.height * H));
  }
  if (res) {
    const s = res.suggested_roi;
    if (s) parts.push(rect('suggested', s.x * W, s.y * H, s.width * W, s.height * H));
    for (const d of res.data.detections) {
      const b = d.bbox;
      const track = d.track_id !== undefined ? ` #${d.track_id}` : '';
      const posture = d.posture ? ` ${escapeText(d.posture)}` : '';
      const figure = skeleton(d);
      // In privacy mode a stick figure stands for the person (no box).
      if (!(figure && state.showVideo === false)) {
        parts.push(rect('box', b.x, b.y, b.width, b.height,
          `data-confidence="${d.confidence}" data-track="${d.track_id ?? ''}" data-frame="${res.frame_seq}"`));
      }
      parts.push(figure);
      parts.push(`<text class="box-label" x="${b.x + 3}" y="${Math.max(14, b.y - 5)}">${escapeText(d.class || 'person')} ${d.confidence.toFixed(2)}${track}${posture}</text>`);
    }
  }
  // People not seen now, where they were last seen.
  const unseen = (state.room && state.room.occupancy && state.room.occupancy.unseen_people) || [];
  for (const p of unseen) {
    const x = p.position.x * W;
    const y = p.position.y * H;
    parts.push(`<circle class="unseen" cx="${x}" cy="${y}" r="18" data-track="${p.track_id}"/>`);
    parts.push(`<text class="unseen-label" x="${x + 22}" y="${y}">#${p.track_id} not seen since ${escapeText(clock(p.last_seen))}</text>`);
  }
  for (const c of state.candidates) {
    const r = c.rect;
    parts.push(rect('candidate', r.x * W, r.y * H, r.width * W, r.height * H, `data-track="${c.track_id}"`));
    parts.push(`<text class="candidate-label" x="${r.x * W + 3}" y="${r.y * H + r.height * H - 6}">not moved for ${Math.round(c.still_for_s / 60)} min: a picture?</text>`);
  }
  if (state.drag) {
    const d = dragRect();
    parts.push(rect('drawing', d.x * W, d.y * H, d.width * W, d.height * H));
  }
  $('overlay').innerHTML = parts.join('');
  $('frameinfo').textContent = state.shown
    ? `frame ${state.shown.seq}${res ? ` · boxes from frame ${res.frame_seq}` : ''}`
    : '';
}

// ---- drawing ROIs and zones ----

// A zone as set_zones takes it back (an ignore, rest or exit zone stays one).
function zoneSpec(z) {
  const spec = { name: z.name, polygon: z.polygon };
  for (const kind of ['ignore', 'rest', 'exit']) if (z[kind]) spec[kind] = true;
  return spec;
}

function toNorm(ev) {
  const r = $('overlay').getBoundingClientRect();
  return { x: (ev.clientX - r.left) / r.width, y: (ev.clientY - r.top) / r.height };
}

function dragRect() {
  const d = state.drag;
  const round = (v) => Math.round(v * 10000) / 10000;
  return {
    x: round(Math.min(d.x0, d.x1)),
    y: round(Math.min(d.y0, d.y1)),
    width: round(Math.abs(d.x1 - d.x0)),
    height: round(Math.abs(d.y1 - d.y0)),
  };
}

function setMode(mode) {
  state.mode = state.mode === mode ? null : mode;
  $('drawroi').classList.toggle('active', state.mode === 'roi');
  $('drawzone').classList.toggle('active', state.mode === 'zone');
  $('mode').textContent = state.mode
    ? `Drag on the picture to draw the ${state.mode === 'roi' ? 'attention ROI' : 'zone'}.`
    : 'Drag on the picture to draw.';
}

const overlay = $('overlay');
overlay.addEventListener('pointerdown', (ev) => {
  if (!state.mode) return;
  const p = toNorm(ev);
  state.drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
  overlay.setPointerCapture(ev.pointerId);
  ev.preventDefault();
});
overlay.addEventListener('pointermove', (ev) => {
  if (!state.drag) return;
  const p = toNorm(ev);
  // Not clamped: a rectangle dragged past the picture is the daemon's to refuse.
  state.drag.x1 = p.x;
  state.drag.y1 = p.y;
  state.dirty = true;
});
overlay.addEventListener('pointerup', async () => {
  if (!state.drag) return;
  const r = dragRect();
  const mode = state.mode;
  state.drag = null;
  state.dirty = true;
  setMode(null);
  if (mode === 'roi') {
    await command('set_attention_rois', { rois: [r] });
  } else if (mode === 'zone') {
    const name = $('zonename').value.trim() || `zone-${state.zones.length + 1}`;
    const zones = state.zones.map(zoneSpec);
    const zone = { name, rect: r };
    const kind = $('zonekind').value;
    if (kind) zone[kind] = true;
    zones.push(zone);
    await command('set_zones', { zones });
  }
});

async function deleteZone(name) {
  const left = state.zones.filter((z) => z.name !== name).map(zoneSpec);
  if (left.length === 0) await command('clear_zones');
  else await command('set_zones', { zones: left });
}

// ---- status ----

function row(name, value) {
  return `<tr><td>${escapeText(name)}</td><td>${escapeText(value)}</td></tr>`;
}

async function pollStatus() {
  if (!state.cam) return;
  let s;
  try {
    s = await getJson(`/api/status?camera=${encodeURIComponent(state.cam.instance_id)}`);
  } catch (e) {
    $('status').innerHTML = row('status', e.message);
    return;
  }
  const st = s.status || {};
  const h = s.health || {};
  const stream = st.stream || {};
  const inf = st.inference || {};
  const paused = st.state === 'paused';
  if (paused !== state.paused) {
    state.paused = paused;
    state.dirty = true;
  }
  state.rateHz = Number(inf.rate_hz || 0);
  const em = st.emitter || {};
  const workers = (s.workers || []).map((w) => `${w.id} ${w.up ? 'up' : (w.failed ? 'failed' : 'down')}`).join(', ');
  // Frames the workers were too busy to look at: each worker always takes
  // the newest frame, so a skipped one is never late, only not looked at.
  const skipped = (h.frame_bus || []).map((g) => `${g.group}: ${g.dropped} (${(100 * g.drop_rate).toFixed(1)} %)`).join(', ');
  const skippedHint = (h.frame_bus || []).some((g) => g.drop_rate > 0.05)
    ? ' (the detector was busy: lower the rate or add cores)'
    : '';
  $('status').innerHTML = [
    row('health', h.status || st.health || '?'),
    row('inference', st.state || '?'),
    row('privacy', st.privacy ? 'on: no video leaves the sensor' : 'off'),
    row('stream', `${stream.connected ? 'connected' : 'down'}, ${Number(stream.fps || 0).toFixed(1)} fps, ${stream.frames || 0} frames`),
    row('rate', `${Number(inf.rate_hz || 0).toFixed(2)} Hz`),
    row('model', inf.model || '–'),
    row('workers', workers || '–'),
    row('MQTT', `${em.connected ? 'connected' : 'disconnected'}, ${em.published || 0} published, ${em.dropped || 0} dropped`),
    row('frames skipped', (skipped || '0') + skippedHint),
    row('light', st.presence && st.presence.night ? 'night (grayscale)' : 'day'),
  ].join('');
  state.candidates = (st.presence && st.presence.ignore_candidates) || [];
  const hints = state.candidates
    .map((c) => `<li>#${c.track_id} has not moved for ${Math.round(c.still_for_s / 60)} min <button data-ignore="${c.track_id}">ignore it</button></li>`)
    .join('');
  if (hints !== state.hintList) {
    state.hintList = hints;
    $('candidates').innerHTML = hints;
  }
  const alerts = ((st.presence && st.presence.alerts) || [])
    .map((a) => `<li data-alert="${escapeText(a.alert_id)}">${a.alert === 'fall' ? 'FALL' : 'PERSON DOWN'}: #${a.track_id} since ${escapeText(clock(a.since))} <button data-ack="${escapeText(a.alert_id)}">acknowledge</button></li>`)
    .join('');
  if (alerts !== state.alertList) {
    state.alertList = alerts;
    $('alerts').innerHTML = alerts;
  }
  $('reasons').innerHTML = (h.reasons || []).map((r) => `<li>${escapeText(r)}</li>`).join('');
  state.zones = s.zones || [];
  state.rois = (st.attention && st.attention.rois) || [];
  // Only when it changed: a list rebuilt under the pointer swallows the click
  // of someone pressing "delete" (mousedown on the old button, mouseup on the new).
  const list = state.zones
    .map((z) => {
      const kind = ['rest', 'exit', 'ignore'].find((k) => z[k]);
      return `<li>${escapeText(z.name)}${kind ? ` (${kind})` : ''}<button data-zone="${escapeText(z.name)}">delete</button></li>`;
    })
    .join('');
  if (list !== state.zoneList) {
    state.zoneList = list;
    $('zones').innerHTML = list;
  }
  state.dirty = true;
}

// Someone is on it: the alert ends and is no longer announced.
$('alerts').addEventListener('click', async (ev) => {
  const id = ev.target.getAttribute && ev.target.getAttribute('data-ack');
  if (!id) return;
  await command('ack_alert', { alert_id: id });
  pollStatus();
});

// An operator's choice: the thing that never moves becomes an ignore zone.
$('candidates').addEventListener('click', async (ev) => {
  const id = ev.target.getAttribute && ev.target.getAttribute('data-ignore');
  const c = id && state.candidates.find((x) => String(x.track_id) === id);
  if (!c) return;
  const round = (v) => Math.round(v * 10000) / 10000;
  const r = c.rect;
  const x = Math.max(0, round(r.x - 0.01));
  const y = Math.max(0, round(r.y - 0.01));
  const zone = {
    name: `ignore-${c.track_id}`,
    rect: { x, y, width: Math.min(1 - x, round(r.width + 0.02)), height: Math.min(1 - y, round(r.height + 0.02)) },
    ignore: true,
  };
  await command('set_zones', { zones: [...state.zones.map(zoneSpec), zone] });
});

$('zones').addEventListener('click', (ev) => {
  const name = ev.target.getAttribute && ev.target.getAttribute('data-zone');
  if (name) deleteZone(name);
});
$('pause').onclick = () => command('pause_inference');
$('resume').onclick = () => command('resume_inference');
$('privon').onclick = () => command('enable_privacy');
$('privoff').onclick = () => command('disable_privacy');
$('setrate').onclick = () => command('set_inference_rate', { rate_hz: Number($('rate').value) });
$('drawroi').onclick = () => setMode('roi');
$('clearroi').onclick = () => command('clear_attention_rois');
$('afon').onclick = () => command('enable_auto_focus');
$('afoff').onclick = () => command('disable_auto_focus');
$('drawzone').onclick = () => setMode('zone');
$('camera').onchange = (ev) => selectCamera(ev.target.value);

async function start() {
  let info;
  try {
    info = await getJson('/api/cameras');
  } catch (e) {
    $('link').textContent = e.message;
    $('link').className = 'badge bad';
    return;
  }
  state.cameras = info.cameras;
  state.showVideo = info.show_video;
  $('privacy').hidden = info.show_video;
  $('camera').innerHTML = info.cameras
    .map((c) => `<option value="${escapeText(c.instance_id)}">${escapeText(c.instance_id)} (${escapeText(c.room_id)})</option>`)
    .join('');
  const wanted = params.get('camera');
  if (wanted) $('camera').value = wanted;
  selectCamera($('camera').value);
  setInterval(render, 40);
  setInterval(pollStatus, 2000);
}

start();
