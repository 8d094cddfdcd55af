// The playground: engine models stream over fetch + SSE (/v1/chat/completions),
// agents over Socket.IO (run -> token* -> done | error). Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], socket: null, busy: false };

function sessionDefault() {
  let id = localStorage.getItem("quartet.session");
  if (!id) {
    id = "web-" + Math.random().toString(36).slice(2, 10);
    localStorage.setItem("quartet.session", id);
  }
  return id;
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

function isAgent(model) {
  return model.startsWith("agent/");
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("log").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function showStats(ttftMs, usage, finish) {
  $("ttft").textContent = ttftMs === null ? "TTFT: –" : `TTFT: ${ttftMs.toFixed(0)} ms`;
  $("usage").textContent = usage
    ? `usage: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion = ${usage.total_tokens} tokens`
    : "usage: –";
  $("finish").textContent = finish ? `finish: ${finish}` : "";
}

async function loadModels() {
  const select = $("model");
  select.innerHTML = "";
  const reply = await fetch("/v1/models", { headers: authHeaders() });
  const body = await reply.json();
  if (!reply.ok) {
    bubble("error", body.error ? body.error.message : "could not list the models");
    return;
  }
  for (const card of body.data) {
    const option = document.createElement("option");
    option.value = option.textContent = card.id;
    select.appendChild(option);
  }
  modelChanged();
}

function modelChanged() {
  const agent = isAgent($("model").value);
  document.body.classList.toggle("agent", agent);
  $("transport").textContent = agent ? "agent over Socket.IO" : "model over SSE";
  state.history = []; // a model's conversation lives in this page; a new model starts a new one
  $("log").innerHTML = "";
}

function connectSocket() {
  if (state.socket) return state.socket;
  const key = $("api-key").value.trim();
  state.socket = io({ path: "/socket.io", transports: ["websocket", "polling"], auth: key ? { token: key } : {} });
  state.socket.on("connect_error", (err) => finishRun(null, null, "error", "Socket.IO: " + err.message));
  return state.socket;
}

function finishRun(ttft, usage, finish, error) {
  if (error) bubble("error", error);
  showStats(ttft, usage, finish);
  state.busy = false;
  $("send").disabled = false;
}

function runAgent(model, text, out, started) {
  const socket = connectSocket();
  let ttft = null;
  socket.off("token").off("done").off("error");
  socket.on("token", (data, ack) => {
    if (ttft === null) ttft = performance.now() - started;
    out.textContent += data.text;
    if (ack) ack(); // the server sends the next tokens only as they are acknowledged
  });
  socket.on("done", (data) => finishRun(ttft, data.usage, data.finish_reason));
  socket.on("error", (data) => finishRun(ttft, null, "error", data.message));
  socket.emit("run", {
    agent: model,
    input: text,
    session_id: $("session-id").value.trim(),
    topic_id: $("topic-id").value.trim(),
    memory_mode: $("memory-mode").value,
    max_tokens: parseInt($("max-tokens").value, 10) || null, // null: the agent's default
  });
}

async function runModel(model, text, out, started) {
  state.history.push({ role: "user", content: text });
  const reply = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({
      model,
      messages: state.history,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: parseInt($("max-tokens").value, 10) || undefined,
    }),
  });
  if (!reply.ok) {
    const body = await reply.json().catch(() => ({}));
    state.history.pop();
    return finishRun(null, null, "error", body.error ? body.error.message : `HTTP ${reply.status}`);
  }
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", ttft = null, usage = null, finish = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) return finishRun(ttft, null, "error", chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) {
          if (ttft === null) ttft = performance.now() - started;
          out.textContent += choice.delta.content;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
  }
  state.history.push({ role: "assistant", content: out.textContent });
  finishRun(ttft, usage, finish);
}

function send() {
  const text = $("prompt").value.trim();
  const model = $("model").value;
  if (!text || !model || state.busy) return;
  state.busy = true;
  $("send").disabled = true;
  $("prompt").value = "";
  bubble("user", text);
  const out = bubble("assistant", "");
  showStats(null, null, "");
  const started = performance.now();
  if (isAgent(model)) {
    runAgent(model, text, out, started);
  } else {
    runModel(model, text, out, started).catch((err) => finishRun(null, null, "error", String(err)));
  }
}

$("send").addEventListener("click", send);
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send();
});
$("model").addEventListener("change", modelChanged);
$("api-key").addEventListener("change", () => {
  if (state.socket) { state.socket.disconnect(); state.socket = null; }
  loadModels();
});
$("session-id").value = sessionDefault();
loadModels().catch((err) => bubble("error", "could not list the models: " + err));
