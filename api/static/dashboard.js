// ctrlgpt operations dashboard: polls /v1/ops/lag-history and /v1/ops/summary and redraws
// tables and inline SVG charts in place. No libraries, no build step; data is set as text, never as HTML.
"use strict";

const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#0550ae", "#953800", "#6e7781"];
const SVG = "http://www.w3.org/2000/svg";
let pollMs = 5000;

function el(tag, attrs = {}, text = null) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = String(text);
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : Number(value).toFixed(digits);
}

function fillTable(id, rows) {
  // rows: [{key, cells: [text | {text, cls}]}]; rows are replaced, keyed by data-key for tests and selection.
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map(({ key, cells, onclick }) => {
    const tr = el("tr", { "data-key": key });
    for (const cell of cells) {
      const td = typeof cell === "object" && cell !== null ? el("td", { class: cell.cls || "" }, cell.text) : el("td", {}, cell);
      tr.append(td);
    }
    if (onclick) { tr.style.cursor = "pointer"; tr.addEventListener("click", onclick); }
    return tr;
  }));
}

// series: [{name, points: [[x, y], ...]}]; x and y numeric. Draws axes, one polyline per series and a legend.
// log: y on a log10(1 + y) scale (for counts >= 0), so a group climbing from 0 to 500 shows beside one at 20,000.
function lineChart(svg, series, { xFormat = (x) => fmt(x, 0), empty = "no data yet", log = false, xLabel = "" } = {}) {
  const W = 800, H = 220, L = 60, R = 10, T = 10, B = 50;
  const ty = log ? (y) => Math.log10(1 + Math.max(0, y)) : (y) => y;
  const untransform = log ? (v) => Math.pow(10, v) - 1 : (v) => v;
  series = series.map((s) => ({ ...s, points: s.points.map(([x, y]) => [x, ty(y)]) }));
  svg.dataset.scale = log ? "log" : "linear";
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const nodes = [];
  if (!all.length) {
    nodes.push(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, empty));
    svg.replaceChildren(...nodes);
    return;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(0, ...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  nodes.push(el("svg:line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  nodes.push(el("svg:line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  const ticks = log ? [...Array(Math.floor(y1) + 1).keys()].filter((v) => v >= y0) : [y0, (y0 + y1) / 2, y1];
  for (const y of ticks) {
    const label = log ? fmt(Math.round(untransform(y)), 0) : fmt(y, 2);
    nodes.push(el("svg:text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end" }, label));
  }
  nodes.push(el("svg:text", { x: L, y: H - B + 14 }, xFormat(x0)));
  nodes.push(el("svg:text", { x: W - R, y: H - B + 14, "text-anchor": "end" }, xFormat(x1)));
  if (xLabel) nodes.push(el("svg:text", { x: (L + W - R) / 2, y: H - B + 14, "text-anchor": "middle" }, xLabel));
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length) {
      nodes.push(el("svg:polyline", { stroke: color, "data-series": s.name, points: pts.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ") }));
    }
    nodes.push(el("svg:text", { x: L + (i % 4) * 180, y: H - 22 + Math.floor(i / 4) * 12, style: `fill:${color}` }, s.name));
  });
  svg.replaceChildren(...nodes);
}

const clock = (t) => new Date(t * 1000).toLocaleTimeString();

function renderLag(data) {
  fillTable("groups", data.groups.map((g) => ({
    key: g.group,
    cells: [g.group, { text: g.status, cls: `status-${g.status}` }, { text: g.burrow_status, cls: `status-${g.burrow_status}` },
      g.state, g.members, g.total_lag, duration(g.time_to_drain_s),
      g.partitions.map((p) => `${p.topic}[${p.partition}] ${p.status} lag ${p.lag}`).join("; ")],
  })));
  const names = [...new Set(data.points.flatMap((p) => Object.keys(p.groups)))].sort();
  lineChart(document.getElementById("lag-chart"), names.map((name) => ({
    name,
    points: data.points.filter((p) => name in p.groups).map((p) => [p.at, p.groups[name].lag]),
  })), { xFormat: clock, log: document.getElementById("lag-log").checked });
  const last = data.points.length ? data.points[data.points.length - 1].at : null;
  const kafka = document.getElementById("kafka");
  const fresh = last !== null && data.now - last <= 3 * data.interval_s;
  kafka.textContent = last === null ? "Kafka: no sample yet" : fresh ? "Kafka: up" : `Kafka: last sample ${duration(data.now - last)} ago`;
  kafka.className = `pill ${fresh ? "up" : "down"}`;
}

function rates(points, pick) {
  // Records per second between consecutive samples, per key of pick(point).
  const out = {};
  for (let i = 1; i < points.length; i++) {
    const a = pick(points[i - 1]), b = pick(points[i]), dt = points[i].at - points[i - 1].at;
    if (dt <= 0) continue;
    for (const key of Object.keys(b)) {
      if (key in a) (out[key] ||= []).push([points[i].at, (b[key] - a[key]) / dt]);
    }
  }
  return out;
}

function controlGap(metrics) {
  // The run's control gap by each independent judge (trainer/control.py), with its 95 % interval.
  const judges = [["judge", "MiniLM"], ["lexicon", "AFINN"]].filter(([name]) => `control_gap_${name}` in metrics);
  if (!judges.length) return "–";
  return judges.map(([name, label]) => `${label} ${fmt(metrics[`control_gap_${name}`], 2)} `
    + `[${fmt(metrics[`control_gap_${name}_low`], 2)}, ${fmt(metrics[`control_gap_${name}_high`], 2)}]`).join("; ");
}

function rewardHacking(metrics) {
  if (!("reward_hacking" in metrics)) return "–";
  return metrics.reward_hacking ? { text: "flagged", cls: "status-ERR" } : { text: "no", cls: "status-OK" };
}

function renderSummary(data) {
  const points = data.throughput;
  const latest = points.length ? points[points.length - 1] : { topics: {}, dead_letters: {} };
  const first = points.length ? points[0] : { topics: {}, dead_letters: {} };
  const perTopic = rates(points, (p) => p.topics);
  const topicNames = Object.keys(data.produced_by);
  fillTable("throughput", topicNames.filter((t) => t in latest.topics).map((topic) => {
    const series = perTopic[topic] || [];
    return { key: topic, cells: [data.produced_by[topic], topic, latest.topics[topic],
      series.length ? fmt(series[series.length - 1][1], 2) : "–"] };
  }));
  lineChart(document.getElementById("throughput-chart"),
    topicNames.filter((t) => t in perTopic).map((t) => ({ name: data.produced_by[t], points: perTopic[t] })),
    { xFormat: clock, empty: "needs two samples" });
  fillTable("dead-letters", Object.keys(latest.dead_letters).sort().map((stage) => ({
    key: stage,
    cells: [stage, latest.dead_letters[stage], latest.dead_letters[stage] - (first.dead_letters[stage] ?? latest.dead_letters[stage])],
  })));

  const served = document.getElementById("served");
  served.textContent = data.served.length
    ? `serving ${data.served.map((s) => `${s.model_name} ${s.version}`).join(", ")}` : "no model served yet";
  renderGateChart(data.models);
  fillTable("models", [...data.models].reverse().map((m) => ({
    key: `${m.model_name}/${m.version}`,
    cells: [m.model_name, m.version, m.action, m.parent_version || "–", controlGap(m.metrics), rewardHacking(m.metrics),
      Object.entries(m.metrics).map(([k, v]) => `${k}=${fmt(v)}`).join(", "), new Date(m.at).toLocaleString(), m.reason],
  })));

  document.getElementById("runs-by-stage").textContent = Object.entries(data.runs_by_stage)
    .map(([stage, n]) => `${stage}: ${n}`).join(" · ") || "no training run seen yet";
  fillTable("runs", data.runs.map((r) => ({
    key: r.run_id,
    cells: [r.run_id, { text: r.stage, cls: r.stage === "failed" ? "status-ERR" : r.stage === "done" ? "status-OK" : "" },
      r.total_steps ? `${r.step}/${r.total_steps}` : r.step, new Date(r.updated_at).toLocaleTimeString(), r.message],
    onclick: () => { selectedRun = r.run_id; renderCurves(data.runs); },
  })));
  renderCurves(data.runs);
}

let selectedRun = null;

function renderCurves(runs) {
  // The selected run, else the newest run that logged a figure.
  const run = runs.find((r) => r.run_id === selectedRun) || runs.find((r) => r.points.length) || runs[0];
  document.getElementById("curve-run").textContent = run ? run.run_id : "–";
  const pts = run ? run.points : [];
  // x is the stage's own step: each stage (SFT, reward model, RL) counts its steps from the start.
  const curve = (key, stage = null) => pts.filter((p) => p[key] !== null && (stage === null || p.stage === stage))
    .map((p) => [p.step, p[key]]);
  const rl = (key) => pts.filter((p) => p[key] !== null && p.stage !== "sft" && p.stage !== "reward").map((p) => [p.step, p[key]]);
  const steps = { xLabel: "step" };
  lineChart(document.getElementById("loss-chart"), ["sft", "reward"].map((stage) => ({
    name: stage === "sft" ? "SFT loss" : "reward-model loss", points: curve("loss", stage),
  })), { ...steps, empty: "no SFT or reward-model loss logged yet" });
  lineChart(document.getElementById("reward-chart"), [{ name: "reward", points: rl("reward") }], { ...steps, empty: "no reward logged yet" });
  lineChart(document.getElementById("kl-chart"), [{ name: "KL", points: rl("kl") }], { ...steps, empty: "no KL logged yet" });
}

function renderGateChart(models) {
  // One gate figure (the select) across each model's versions, in the order they were announced.
  const select = document.getElementById("gate-metric");
  const keys = [...new Set(models.flatMap((m) => Object.keys(m.metrics)))].sort();
  if ([...select.options].map((o) => o.value).join() !== keys.join()) {
    const wanted = select.value || keys.find((k) => k.includes("judge")) || keys[0] || "";
    select.replaceChildren(...keys.map((k) => el("option", { value: k }, k)));
    if (keys.includes(wanted)) select.value = wanted;
  }
  const metric = select.value;
  const names = [...new Set(models.map((m) => m.model_name))].sort();
  lineChart(document.getElementById("gate-chart"), names.map((name) => {
    const mine = models.filter((m) => m.model_name === name && metric in m.metrics);
    return { name, points: mine.map((m, i) => [i + 1, m.metrics[metric]]) };
  }), { xLabel: "version (in announcement order)", empty: "no version with gate figures yet" });
}

let lastSummary = null, lastLag = null;  // the latest answers, redrawn when a control changes

async function poll() {
  try {
    const [lag, summary] = await Promise.all(["/v1/ops/lag-history", "/v1/ops/summary"].map(async (url) => {
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      return response.json();
    }));
    renderLag(lag);
    renderSummary(summary);
    lastSummary = summary;
    lastLag = lag;
    pollMs = Math.max(1000, lag.interval_s * 1000);
    document.getElementById("last-update").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById("last-update").textContent = `update failed: ${error.message}`;
  } finally {
    setTimeout(poll, pollMs);
  }
}

document.getElementById("lag-log").addEventListener("change", () => lastLag && renderLag(lastLag));
document.getElementById("gate-metric").addEventListener("change", () => lastSummary && renderGateChart(lastSummary.models));
poll();
