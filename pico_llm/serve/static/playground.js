// The playground: a completion streamed through the same /v1 API every OpenAI client uses.
"use strict";

const $ = (id) => document.getElementById(id);
let controller = null;

async function loadModels() {
  const response = await fetch("/v1/models");
  const {data} = await response.json();
  $("model").replaceChildren(...data.map((m) => new Option(m.id, m.id)));
}

function numberField(id, parse) {
  const text = $(id).value.trim();
  return text === "" ? undefined : parse(text);
}

function request() {
  return {
    model: $("model").value,
    prompt: $("prompt").value,
    max_tokens: numberField("max_tokens", parseInt),
    temperature: numberField("temperature", parseFloat),
    top_k: numberField("top_k", parseInt),
    top_p: numberField("top_p", parseFloat),
    seed: numberField("seed", parseInt),
    stream: true,
    stream_options: {include_usage: true},
  };
}

// Server-Sent Events from a fetch body: "data: {json}" events separated by blank lines, "data: [DONE]" last.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (event.startsWith("data: ")) yield event.slice(6);
    }
  }
}

function finish(status, error) {
  $("status").textContent = status;
  $("status").classList.toggle("error", Boolean(error));
  $("generate").disabled = false;
  $("stop").disabled = true;
  controller = null;
  document.body.dataset.state = "done";
}

async function generate() {
  const body = request();
  $("echo").textContent = body.prompt;
  $("completion").textContent = "";
  $("generate").disabled = true;
  $("stop").disabled = false;
  $("status").textContent = "generating…";
  document.body.dataset.state = "generating";
  controller = new AbortController();
  const started = performance.now();
  let tokens = 0, chunks = 0;
  try {
    const response = await fetch("/v1/completions", {method: "POST", headers: {"Content-Type": "application/json"},
                                                     body: JSON.stringify(body), signal: controller.signal});
    if (!response.ok) {
      const {error} = await response.json();
      return finish(`error ${response.status}: ${error.message}`, true);
    }
    for await (const data of events(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) return finish(`error: ${chunk.error.message}`, true);
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      for (const choice of chunk.choices) {
        $("completion").textContent += choice.text;
        chunks += 1;
      }
      const seconds = (performance.now() - started) / 1000;
      $("status").textContent = `${(tokens || chunks)} tokens, ${((tokens || chunks) / seconds).toFixed(1)} tokens/s`;
    }
    const seconds = (performance.now() - started) / 1000;
    finish(`${tokens} tokens in ${seconds.toFixed(2)} s: ${(tokens / seconds).toFixed(1)} tokens/s`);
  } catch (error) {
    finish(error.name === "AbortError" ? "stopped" : `error: ${error.message}`, error.name !== "AbortError");
  }
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
loadModels();
