// Audio worklets of the live page. The AudioContext runs at 16 kHz, the model's rate, so no resampling here.

// Capture: posts every 3200 samples (200 ms) of its input to the page as a Float32Array.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = new Float32Array(3200);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data !== "flush") return;
      if (this.filled) this.port.postMessage(this.chunk.slice(0, this.filled));
      this.filled = 0;
      this.port.postMessage("flushed");
    };
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    let offset = 0;
    while (offset < channel.length) {
      const n = Math.min(channel.length - offset, this.chunk.length - this.filled);
      this.chunk.set(channel.subarray(offset, offset + n), this.filled);
      this.filled += n;
      offset += n;
      if (this.filled === this.chunk.length) {
        this.port.postMessage(this.chunk.slice());
        this.filled = 0;
      }
    }
    return true;
  }
}

// Playback: plays the samples it is sent, in order, from the moment it gets "start" (the first frame),
// so the audio keeps the video's timing; silence while it runs dry.
class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.head = 0;
    this.playing = false;
    this.port.onmessage = (event) => {
      if (event.data === "start") this.playing = true;
      else this.queue.push(event.data);
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing) return true;
    let i = 0;
    while (i < out.length && this.queue.length) {
      const block = this.queue[0];
      const n = Math.min(out.length - i, block.length - this.head);
      out.set(block.subarray(this.head, this.head + n), i);
      i += n;
      this.head += n;
      if (this.head === block.length) {
        this.queue.shift();
        this.head = 0;
      }
    }
    return true;
  }
}

registerProcessor("ditto-capture", CaptureProcessor);
registerProcessor("ditto-playback", PlaybackProcessor);
