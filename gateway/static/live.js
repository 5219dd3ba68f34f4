// The live page: audio (microphone or file) goes to the gateway as 16 kHz int16 PCM over a WebSocket,
// frames come back as JPEGs and are drawn at their presentation time, with the sent audio played in step.
// window.dittoLive holds what the stats panel shows (the browser test reads it).

const $ = (id) => document.getElementById(id);
const FRAME_HEADER_BYTES = 12; // uint32 frame index + float64 pts, little-endian (gateway/protocol.py)

const stats = (window.dittoLive = { state: "idle", frames: 0, drawn: 0, late: 0, firstFrameMs: null, fps: 0, samplesSent: 0, avLagMs: null, error: null });
let run = null;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
  if (isError) stats.error = text;
}

function showStats() {
  $("stat-first-frame").textContent = stats.firstFrameMs === null ? "–" : `${Math.round(stats.firstFrameMs)} ms`;
  $("stat-fps").textContent = stats.frames ? stats.fps.toFixed(1) : "–";
  $("stat-frames").textContent = String(stats.frames);
  $("stat-late").textContent = String(stats.late);
  $("stat-av-lag").textContent = stats.avLagMs === null ? "–" : `${Math.round(stats.avLagMs)} ms`;
}

async function checked(response) {
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.detail || `${response.status} ${response.statusText}`);
  }
  return response.json();
}

async function registerPortrait() {
  const choice = document.querySelector("input[name=portrait]:checked").value;
  if (choice === "sample") return (await checked(await fetch("/api/avatar/sample", { method: "POST" }))).avatar_id;
  const file = $("portrait-file").files[0];
  if (!file) throw new Error("choose a photo or video to upload, or use the sample");
  const kind = file.type.startsWith("video/") ? "video" : "image";
  return (await checked(await fetch(`/api/avatar?kind=${kind}`, { method: "POST", body: file }))).avatar_id;
}

async function audioSource(ctx) {
  const choice = document.querySelector("input[name=audio]:checked").value;
  if (choice === "mic") {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    return { node: ctx.createMediaStreamSource(stream), stop: () => stream.getTracks().forEach((t) => t.stop()) };
  }
  const file = $("audio-file").files[0];
  if (!file) throw new Error("choose an audio file, or use the microphone");
  const buffer = await ctx.decodeAudioData(await file.arrayBuffer());
  const node = ctx.createBufferSource();
  node.buffer = buffer;
  node.onended = () => stop();
  return { node, start: () => node.start(), stop: () => node.disconnect() };
}

function openSocket(avatarId) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/session?avatar=${encodeURIComponent(avatarId)}`);
  ws.binaryType = "arraybuffer";
  return new Promise((resolve, reject) => {
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ready") resolve(ws);
      else reject(new Error(message.message || "the gateway refused the session"));
    };
    ws.onerror = () => reject(new Error("cannot reach the gateway"));
  });
}

function toInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = Math.max(-1, Math.min(1, samples[i])) * 32767;
  return out.buffer;
}

async function start() {
  $("start").disabled = true;
  Object.assign(stats, { state: "starting", frames: 0, drawn: 0, late: 0, firstFrameMs: null, fps: 0, samplesSent: 0, avLagMs: null, error: null });
  showStats();
  try {
    setStatus("registering the portrait …");
    const avatarId = await registerPortrait();
    const ctx = new AudioContext({ sampleRate: 16000 });
    await ctx.audioWorklet.addModule("/static/worklets.js");
    const capture = new AudioWorkletNode(ctx, "ditto-capture");
    const playback = new AudioWorkletNode(ctx, "ditto-playback", { numberOfInputs: 0, outputChannelCount: [1] });
    if ($("playback").checked) playback.connect(ctx.destination);
    const mute = ctx.createGain();
    mute.gain.value = 0;
    capture.connect(mute).connect(ctx.destination); // keeps the capture node pulled
    const source = await audioSource(ctx);
    setStatus("opening the session …");
    const ws = await openSocket(avatarId);
    run = { ctx, ws, capture, playback, source, frames: [], arrivals: [], decoding: Promise.resolve(), sentAt: null, t0: null, t0Perf: null, ended: false };
    ws.onmessage = onMessage;
    ws.onclose = () => { if (run && run.ws === ws && stats.state !== "stopped") finish("the gateway closed the session", true); };
    capture.port.onmessage = (event) => {
      if (!run || run.ended) return;
      if (event.data === "flushed") {
        run.ended = true;
        ws.send(JSON.stringify({ type: "end" }));
        return;
      }
      if (run.sentAt === null) run.sentAt = performance.now();
      ws.send(toInt16(event.data));
      stats.samplesSent += event.data.length;
      playback.port.postMessage(event.data);
    };
    source.node.connect(capture);
    if (source.start) source.start();
    stats.state = "running";
    setStatus("streaming: speak or play …");
    $("stop").disabled = false;
    requestAnimationFrame(draw);
  } catch (error) {
    stats.state = "idle";
    setStatus(`error: ${error.message}`, true);
    $("start").disabled = false;
  }
}

function onMessage(event) {
  if (typeof event.data === "string") {
    // after the frames before it are decoded and counted: events and frames keep their order
    const message = JSON.parse(event.data);
    if (message.type === "done") run.decoding = run.decoding.then(() => finish(`done: ${message.frames} frames`));
    else if (message.type === "error") run.decoding = run.decoding.then(() => finish(`error: ${message.message}`, true));
    return;
  }
  const data = event.data;
  run.decoding = run.decoding.then(() => onFrame(data)); // decode in arrival order
}

async function onFrame(data) {
  if (!run) return;
  const view = new DataView(data);
  const index = view.getUint32(0, true);
  const pts = view.getFloat64(4, true);
  const bitmap = await createImageBitmap(new Blob([new Uint8Array(data, FRAME_HEADER_BYTES)], { type: "image/jpeg" }));
  const now = performance.now();
  if (run.t0 === null) {
    // Playback (video and audio) starts with the first frame; every later frame has its time from there.
    stats.firstFrameMs = now - run.sentAt;
    run.t0 = run.ctx.currentTime;
    run.t0Perf = now;
    run.playback.port.postMessage("start");
  } else if (now > run.t0Perf + pts * 1000 + 1) {
    stats.late += 1;
  }
  stats.frames += 1;
  run.arrivals.push(now);
  while (run.arrivals.length && run.arrivals[0] < now - 1000) run.arrivals.shift();
  stats.fps = run.arrivals.length > 1 ? ((run.arrivals.length - 1) * 1000) / (now - run.arrivals[0]) : 0;
  run.frames.push({ index, pts, bitmap });
  showStats();
}

function draw() {
  if (!run) return;
  if (run.t0 !== null) {
    const clock = run.ctx.currentTime - run.t0;
    let latest = null;
    while (run.frames.length && run.frames[0].pts <= clock) {
      if (latest) latest.bitmap.close();
      latest = run.frames.shift();
    }
    if (latest) {
      const canvas = $("video");
      if (canvas.width !== latest.bitmap.width || canvas.height !== latest.bitmap.height) {
        canvas.width = latest.bitmap.width;
        canvas.height = latest.bitmap.height;
      }
      canvas.getContext("2d").drawImage(latest.bitmap, 0, 0);
      latest.bitmap.close();
      // how far the picture trails the audio clock when it is shown (the audio plays on that clock)
      run.lagSum = (run.lagSum || 0) + (clock - latest.pts) * 1000;
      stats.drawn += 1;
      stats.avLagMs = run.lagSum / stats.drawn;
    }
  }
  requestAnimationFrame(draw);
}

function stop() {
  if (!run || run.stopping) return;
  run.stopping = true;
  $("stop").disabled = true;
  setStatus("finishing: the last frames are on their way …");
  run.source.stop();
  run.capture.port.postMessage("flush"); // the worklet sends what it holds, then "flushed" -> END
}

function finish(text, isError = false) {
  if (!run) return;
  const ending = run;
  stats.state = isError ? "failed" : "stopped";
  setStatus(text, isError);
  ending.source.stop();
  ending.ws.onclose = null;
  ending.ws.close();
  // let the queued frames play out, then release the audio
  setTimeout(() => { if (run === ending) run = null; ending.ctx.close(); }, 1500);
  $("start").disabled = false;
  $("stop").disabled = true;
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
fetch("/api/config")
  .then(checked)
  .then((config) => {
    $("stat-server").textContent = config.triton_url;
    if (!config.sample) document.querySelector("input[name=portrait][value=upload]").checked = true;
  })
  .catch((error) => setStatus(`error: ${error.message}`, true));
