// The flow page: fetch /api/flow every few seconds and fill the two tables. No library: plain DOM, text only
// (values are set with textContent, never as HTML).
"use strict";

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fillPath(path, stages) {
  const body = document.querySelector(`#flow-${path} tbody`);
  const rows = [];
  for (const stage of stages) {
    const row = document.createElement("tr");
    row.dataset.stage = stage.name;
    cell(row, stage.name, "name");
    cell(row, stage.count, "count");
    cell(row, stage.behind, stage.behind ? "behind lagging" : "behind");
    cell(row, stage.latency, "latency");
    cell(row, stage.freshness, "freshness");
    const detail = cell(row, stage.detail, "detail");
    if (stage.error) {
      const error = document.createElement("div");
      error.className = "error";
      error.textContent = stage.error;
      detail.appendChild(error);
    }
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

async function refreshFlow() {
  const updated = document.getElementById("updated");
  try {
    const answer = await fetch("/api/flow", { cache: "no-store" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const flow = await answer.json();
    fillPath("batch", flow.batch);
    fillPath("stream", flow.stream);
    updated.textContent = `Updated ${flow.at}.`;
    updated.className = "muted";
  } catch (error) {
    updated.textContent = `Console unreachable: ${error.message}`;
    updated.className = "error";
  }
}

function startFlow(everyMs) {
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return; // no piling up, nothing while the tab is hidden
    busy = true;
    try { await refreshFlow(); } finally { busy = false; }
  };
  tick();
  setInterval(tick, everyMs);
}
