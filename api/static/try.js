// The try-it page: generate with the served model, then rate the answer or pick the better of two.
// Every judgement is POSTed to /v1/feedback with a feedback id of its own, so a retry records it once.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // what is on screen: {prompt, target, version, completions, texts, feedbackId}

// Ids from getRandomValues: crypto.randomUUID exists only in secure contexts.
function randomId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function clientId() {
  let id = localStorage.getItem("ctrlgpt-client-id");
  if (!id) {
    id = randomId("web-");
    localStorage.setItem("ctrlgpt-client-id", id);
  }
  return id;
}

function say(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Client-Id": clientId() },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(answer.detail) ? answer.detail.map((e) => e.msg).join("; ") : answer.detail;
    const error = new Error(detail || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return answer;
}

function numberOf(id) {
  return Number($(id).value);
}

function generateBody() {
  return {
    prompt: $("prompt").value,
    target: $("target").value,
    max_new_tokens: numberOf("max_new_tokens"),
    temperature: numberOf("temperature"),
    top_p: numberOf("top_p"),
    top_k: numberOf("top_k"),
  };
}

function setBusy(busy) {
  for (const id of ["one", "two", "thumbs-up", "thumbs-down", "pick-a", "pick-b"]) $(id).disabled = busy;
}

async function ask(answers) {
  const body = generateBody();
  setBusy(true);
  say($("thanks"), "");
  say($("status"), answers === 1 ? "Writing…" : "Writing two answers…");
  try {
    // One after the other: the server runs generations in turn anyway.
    const results = [];
    for (let i = 0; i < answers; i++) results.push(await postJson("/v1/generate", body));
    current = {
      prompt: body.prompt,
      target: results[0].target || body.target,
      version: results[0].model_version,
      completions: results.map((r) => r.completion),
      // What the version read and wrote, as the API decoded it (prompt template and completion together).
      texts: results.map((r) => r.text),
      feedbackId: randomId("try-"),
    };
    show(answers);
    say($("status"), "");
  } catch (error) {
    say($("status"), `Could not generate: ${error.message}`, true);
  } finally {
    setBusy(false);
  }
}

function show(answers) {
  $("single").hidden = answers !== 1;
  $("pair").hidden = answers !== 2;
  if (answers === 1) {
    $("single-version").textContent = current.version;
    $("single-text").textContent = current.texts[0];
  } else {
    $("pair-version").textContent = current.version;
    $("answer-a").textContent = current.texts[0];
    $("answer-b").textContent = current.texts[1];
  }
}

// Kafka briefly away answers 503: the same feedback id is sent again, so it still counts once.
async function sendFeedback(body) {
  setBusy(true);
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const answer = await postJson("/v1/feedback", { ...body, feedback_id: current.feedbackId });
        say($("thanks"), `Thank you: recorded as ${answer.label_id}.`);
        return;
      } catch (error) {
        if (error.status !== 503 || attempt === 3) throw error;
        await new Promise((resolve) => setTimeout(resolve, 2000 * attempt));
      }
    }
  } catch (error) {
    say($("thanks"), `Feedback not recorded: ${error.message}`, true);
  } finally {
    setBusy(false);
  }
}

function rate(rating) {
  sendFeedback({
    kind: "rating", prompt: current.prompt, completion: current.completions[0], rating,
    target: current.target, model_version: current.version,
  });
}

function pick(better) {
  const [a, b] = current.completions;
  if (a === b) {
    say($("thanks"), "Both answers are the same: there is nothing to pick. Ask again.", true);
    return;
  }
  const [chosen, rejected] = better === "a" ? [a, b] : [b, a];
  sendFeedback({
    kind: "preference", prompt: current.prompt, chosen, rejected,
    target: current.target, model_version: current.version,
  });
}

async function loadConfig() {
  const response = await fetch("/try/config");
  const config = await response.json();
  for (const target of config.targets) {
    const option = new Option(target, target, target === config.default_target, target === config.default_target);
    $("target").append(option);
  }
  $("max_new_tokens").max = config.max_new_tokens_limit;
  $("max_new_tokens").value = Math.min(numberOf("max_new_tokens"), config.max_new_tokens_limit);
  $("prompt").maxLength = config.max_prompt_chars;
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  ask(Number(event.submitter ? event.submitter.dataset.answers : 1));
});
$("thumbs-up").addEventListener("click", () => rate("up"));
$("thumbs-down").addEventListener("click", () => rate("down"));
$("pick-a").addEventListener("click", () => pick("a"));
$("pick-b").addEventListener("click", () => pick("b"));
loadConfig().catch((error) => say($("status"), `Could not load the settings: ${error.message}`, true));
