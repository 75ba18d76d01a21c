// beamkit widget front end (anywidget ESM). It renders what the kernel's view model sends:
// header, progress, rows (finished iterations), live_row, beam, best (+ best_image),
// chart_svg, usage (calls, tokens, images, cost), thumbs (references to one small model per
// thumbnail), selected (+ image).
// It never computes scores or rankings itself.

const THUMB_URLS = new Map(); // thumbnail model id -> Promise<object URL>, shared by all views

function thumbURL(model, ref) {
  if (!ref) return null;
  const id = String(ref).replace(/^IPY_MODEL_/, "");
  let p = THUMB_URLS.get(id);
  if (!p) {
    p = model.widget_manager.get_model(id).then((m) => {
      const value = m.get("value");
      return URL.createObjectURL(new Blob([value], { type: "image/" + (m.get("format") || "webp") }));
    });
    p.catch(() => THUMB_URLS.delete(id));
    THUMB_URLS.set(id, p);
  }
  return p;
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (x, d = 1) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const DIM = (d) => (d === "how" ? "HOW" : "WHAT");

function stepLabel(operation, dimension) {
  return operation === "expand" ? "expand WHAT + HOW" : `refine ${DIM(dimension)}`;
}

function blobFrom(model, attr, fmtAttr) {
  const v = model.get(attr);
  if (!v || !v.byteLength) return null;
  return URL.createObjectURL(new Blob([v], { type: "image/" + (model.get(fmtAttr) || "png") }));
}

function render({ model, el }) {
  const root = h("div", { class: "bk-widget" });
  el.appendChild(root);
  const headerEl = h("div", { class: "bk-header" });
  const progressEl = h("div", { class: "bk-progress" });
  const usageEl = h("div", { class: "bk-usage", hidden: true });
  const rowsEl = h("div", { class: "bk-rows" });
  const bestEl = h("div", { class: "bk-best" });
  const chartEl = h("div", { class: "bk-chart-box" });
  const detailEl = h("div", { class: "bk-detail", hidden: true });
  root.append(
    headerEl,
    progressEl,
    usageEl,
    h("div", { class: "bk-main" }, rowsEl, h("div", { class: "bk-side" }, bestEl, chartEl)),
    detailEl,
  );

  const imgs = new Map(); // card key -> <img> (kept across redraws so nothing flickers)
  let bestURL = null, bestURLKey = null;
  let selURL = null;
  let disposed = false;

  function thumbImg(key, cls) {
    const ref = (model.get("thumbs") || {})[key];
    const img = h("img", { class: cls, alt: `candidate ${key}`, "data-key": key });
    if (!ref) {
      img.classList.add("bk-loading");
      return img;
    }
    const p = thumbURL(model, ref);
    p.then((url) => {
      if (!disposed) {
        img.src = url;
        img.classList.remove("bk-loading");
      }
    }, () => {});
    return img;
  }

  function cardImg(key) {
    const ref = (model.get("thumbs") || {})[key];
    let img = imgs.get(key);
    if (img && (img.dataset.ref === String(ref) || !ref)) return img;
    img = thumbImg(key, "bk-thumb");
    if (ref) img.dataset.ref = String(ref);
    imgs.set(key, img);
    return img;
  }

  // -- header ---------------------------------------------------------------------------
  function drawHeader() {
    const hd = model.get("header") || {};
    const params = hd.params || {};
    const status = hd.status || "pending";
    root.dataset.status = status;
    root.dataset.source = hd.source || "";
    const chips = Object.entries(params)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => h("span", { class: "bk-chip", title: k }, `${k} ${v}`));
    const cancel = h(
      "button",
      {
        class: "bk-cancel",
        type: "button",
        disabled: model.get("cancel_requested") || !model.get("cancellable"),
        onclick: (ev) => {
          ev.currentTarget.disabled = true;
          ev.currentTarget.textContent = "Cancelling…";
          model.send({ type: "cancel" });
        },
      },
      model.get("cancel_requested") ? "Cancelling…" : "Cancel",
    );
    if (!model.get("cancellable")) cancel.hidden = true;
    let statusText = status;
    if (hd.source === "loaded") statusText += " · loaded";
    if (hd.source === "remote") statusText += " · remote";
    if (hd.durationMs) statusText += ` · ${(hd.durationMs / 1000).toFixed(1)} s`;
    const err = hd.error && status !== "completed"
      ? h("div", { class: "bk-error", title: hd.error.message || "" }, `${hd.error.code || "ERROR"}: ${hd.error.message || ""}`)
      : null;
    headerEl.replaceChildren(
      h(
        "div",
        { class: "bk-title" },
        h("span", { class: "bk-logo" }, "beamkit"),
        h("span", { class: "bk-prompt", title: "the user's prompt" }, hd.prompt || ""),
        h("span", { class: `bk-status bk-status-${status}` }, statusText),
        cancel,
      ),
      h("div", { class: "bk-params" }, h("span", { class: "bk-jobid" }, hd.jobId || ""), chips),
      ...(err ? [err] : []),
    );
  }

  // -- progress -------------------------------------------------------------------------
  function drawProgress() {
    const p = model.get("progress") || {};
    const total = p.total || 0, done = p.done || 0;
    const pct = total ? Math.min(100, (100 * done) / total) : 0;
    const bits = [`${done} / ${total} candidates`];
    if (p.iteration !== null && p.iteration !== undefined) {
      bits.push(`iteration ${p.iteration} (${p.iteration + 1} of ${p.totalIterations ?? "?"})`);
      bits.push(stepLabel(p.operation, p.dimension));
    }
    if (p.failed) bits.push(`${p.failed} failed`);
    progressEl.replaceChildren(
      h(
        "div",
        { class: "bk-bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": done },
        h("div", { class: "bk-bar-fill", style: `width:${pct.toFixed(1)}%` }),
      ),
      h("div", { class: "bk-progress-text" }, bits.join(" · ")),
    );
  }

  // -- usage and cost (once the job has ended) ------------------------------------------
  function drawUsage() {
    const u = model.get("usage");
    if (!u) {
      usageEl.hidden = true;
      usageEl.replaceChildren();
      return;
    }
    usageEl.hidden = false;
    const n = (x) => Number(x || 0).toLocaleString("en-US");
    const bits = [`${n(u.calls)} call${u.calls === 1 ? "" : "s"}`];
    if (u.inputTokens || u.outputTokens) bits.push(`${n(u.inputTokens)} tokens in / ${n(u.outputTokens)} out`);
    if (u.images !== undefined) bits.push(`${n(u.images)} image${u.images === 1 ? "" : "s"}`);
    const line = [h("b", {}, "Usage"), " · ", bits.join(" · ")];
    if (u.costText) line.push(" · ", h("span", { class: "bk-cost", title: "cost of the provider calls" }, u.costText));
    const models = u.models || [];
    if (!models.length) {
      usageEl.replaceChildren(h("div", { class: "bk-usage-line" }, line));
      return;
    }
    const money = (x) => (u.currency === "USD" ? `$${Number(x || 0).toFixed(4)}` : `${Number(x || 0).toFixed(4)} ${u.currency || ""}`);
    const cols = ["model", "calls", "tokens in", "tokens out", "images", "cost"];
    const table = h(
      "table",
      { class: "bk-usage-table" },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
      h("tbody", {}, models.map((m) =>
        h("tr", { "data-model": m.model },
          h("td", {}, m.model), h("td", {}, n(m.calls)), h("td", {}, n(m.inputTokens)),
          h("td", {}, n(m.outputTokens)), h("td", {}, n(m.images)),
          h("td", {}, (u.unpriced || []).includes(m.model) ? "unpriced" : money(m.cost))))),
    );
    const open = usageEl.querySelector("details")?.open || false; // keep it as the user left it
    usageEl.replaceChildren(h("details", { open }, h("summary", { class: "bk-usage-line" }, line), table));
  }

  // -- rows of cards --------------------------------------------------------------------
  function drawCard(card, inBeam, bestKey) {
    const cls = ["bk-card", `bk-${card.status}`];
    if (card.kept === true) cls.push("bk-kept");
    if (card.kept === false) cls.push("bk-pruned");
    if (inBeam.has(card.key)) cls.push("bk-in-beam");
    if (card.key === bestKey) cls.push("bk-is-best");
    const body = [];
    if (card.status === "ok") {
      body.push(cardImg(card.key));
      body.push(h("div", { class: "bk-total", title: "total score" }, fmt(card.total)));
      body.push(
        h("div", { class: "bk-sub" },
          h("span", { title: "alignment (0–100)" }, `A ${fmt(card.alignment, 0)}`),
          h("span", { title: "aesthetic (0–10)" }, `Ae ${fmt(card.aesthetic, 1)}`)),
      );
      const badge = card.kept === true ? "kept" : card.kept === false ? "pruned" : "";
      if (badge) body.push(h("div", { class: `bk-badge bk-badge-${badge}` }, badge));
    } else {
      const e = card.error || {};
      body.push(h("div", { class: "bk-fail-icon" }, "✕"));
      body.push(h("div", { class: "bk-badge bk-badge-failed" }, "failed"));
      body.push(h("div", { class: "bk-reason", title: e.message || "" }, `${e.code || "ERROR"}: ${e.message || ""}`));
    }
    const title = `iteration ${card.key.split("-")[0]}, candidate ${card.id}` + (card.parent ? `, parent ${card.parent}` : "");
    return h(
      "div",
      {
        class: cls.join(" "),
        "data-key": card.key,
        "data-status": card.status,
        title,
        tabindex: 0,
        onclick: () => model.send({ type: "select", key: card.key }),
      },
      h("div", { class: "bk-card-id" }, `#${card.id}`, card.parent ? h("span", { class: "bk-parent" }, ` ← ${card.parent}`) : null),
      body,
    );
  }

  function drawRows() {
    const rows = [...(model.get("rows") || [])];
    const live = model.get("live_row");
    if (live) rows.push(live);
    const inBeam = new Set(model.get("beam") || []);
    const bestKey = (model.get("best") || {}).key;
    const out = rows.map((row) => {
      const cards = row.cards.map((c) => drawCard(c, inBeam, bestKey));
      const missing = Math.max(0, (row.expected || 0) - row.cards.length);
      if (row.status === "stopped") {
        if (missing) cards.push(h("div", { class: "bk-card bk-not-run" }, `${missing} not run`));
      } else {
        for (let k = 0; k < missing; k++) {
          cards.push(h("div", { class: "bk-card bk-placeholder" }, h("div", { class: "bk-spinner" })));
        }
      }
      const kept = row.cards.filter((c) => c.kept).length;
      const info = [stepLabel(row.operation, row.dimension), `${row.cards.length}/${row.expected ?? "?"}`];
      if (row.status === "completed") info.push(`${kept} kept`);
      else info.push(row.status);
      return h(
        "div",
        { class: `bk-row bk-row-${row.status}`, "data-iteration": row.iteration },
        h("div", { class: "bk-row-head" }, h("b", {}, `Iteration ${row.iteration}`), " · ", info.join(" · ")),
        h("div", { class: "bk-cards" }, cards),
      );
    });
    if (!out.length) out.push(h("div", { class: "bk-empty" }, "waiting for the first candidates…"));
    rowsEl.replaceChildren(...out);
  }

  // -- best so far ---------------------------------------------------------------------------
  function drawBest() {
    const b = model.get("best");
    if (!b) {
      bestEl.replaceChildren(h("div", { class: "bk-section-title" }, "Best so far"), h("div", { class: "bk-empty" }, "no scored candidate yet"));
      return;
    }
    const key = model.get("best_image_key");
    if (key !== bestURLKey) {
      if (bestURL) URL.revokeObjectURL(bestURL);
      bestURL = blobFrom(model, "best_image", "best_image_format");
      bestURLKey = key;
    }
    const img = h("img", { class: "bk-best-image", alt: `best candidate ${key || ""}`, "data-key": key || "" });
    if (bestURL) img.src = bestURL;
    else img.classList.add("bk-loading");
    const prompt = (label, text, cls) =>
      h("div", { class: `bk-prompt-block ${cls}` }, h("div", { class: "bk-label" }, label), h("div", { class: "bk-text" }, text || ""));
    const lineage = (b.lineage || []).map((s) =>
      h(
        "li",
        { class: "bk-step", "data-key": s.key, onclick: () => model.send({ type: "select", key: s.key }) },
        thumbImg(s.key, "bk-step-thumb"),
        h(
          "div",
          { class: "bk-step-body" },
          h("div", { class: "bk-step-head" }, `iter ${s.iteration} #${s.candidateId} · ${stepLabel(s.operation, s.dimension)} · ${fmt(s.total)}`),
          s.what !== undefined ? h("div", { class: "bk-step-text" }, h("b", {}, "WHAT "), s.what) : null,
          s.how !== undefined ? h("div", { class: "bk-step-text" }, h("b", {}, "HOW "), s.how) : null,
        ),
      ),
    );
    bestEl.replaceChildren(
      h("div", { class: "bk-section-title" }, b.final ? "Best" : "Best so far", h("span", { class: "bk-best-key" }, ` iter ${b.iteration} #${b.candidateId}`)),
      img,
      h(
        "div",
        { class: "bk-best-scores" },
        h("span", { class: "bk-best-total", title: "total score" }, fmt(b.total)),
        h("span", { title: "alignment (0–100)" }, `alignment ${fmt(b.alignment, 0)}`),
        h("span", { title: "aesthetic (0–10)" }, `aesthetic ${fmt(b.aesthetic, 1)}`),
      ),
      prompt("WHAT", b.what, "bk-what"),
      prompt("HOW", b.how, "bk-how"),
      prompt("combined", b.combined, "bk-combined"),
      h("details", { class: "bk-lineage", open: true },
        h("summary", {}, (n => `Lineage: ${n} step${n === 1 ? "" : "s"} from iteration 0`)((b.lineage || []).length)),
        h("ol", {}, lineage)),
    );
  }

  function drawChart() {
    const svg = model.get("chart_svg") || "";
    chartEl.replaceChildren(h("div", { class: "bk-section-title" }, "Score per iteration"));
    const box = h("div", { class: "bk-chart" });
    box.innerHTML = svg; // generated by beamkit.widget.chart, text escaped there
    chartEl.append(box);
  }

  // -- a clicked candidate ------------------------------------------------------------------
  function drawDetail() {
    const s = model.get("selected");
    if (selURL) URL.revokeObjectURL(selURL);
    selURL = null;
    if (!s) {
      detailEl.hidden = true;
      detailEl.replaceChildren();
      return;
    }
    detailEl.hidden = false;
    selURL = blobFrom(model, "selected_image", "selected_image_format");
    const img = selURL ? h("img", { class: "bk-detail-image", src: selURL, alt: `candidate ${s.key}` }) : null;
    const line = (label, text) => (text ? h("div", { class: "bk-prompt-block" }, h("div", { class: "bk-label" }, label), h("div", { class: "bk-text" }, text)) : null);
    detailEl.replaceChildren(
      h(
        "div",
        { class: "bk-detail-card" },
        h("button", { class: "bk-close", type: "button", onclick: () => model.send({ type: "select", key: null }) }, "×"),
        h("div", { class: "bk-section-title" }, `Iteration ${s.iteration} · candidate #${s.candidateId}`, s.parent ? ` · parent ${s.parent}` : ""),
        h("div", { class: "bk-detail-body" },
          img,
          h("div", { class: "bk-detail-text" },
            s.status === "ok"
              ? h("div", { class: "bk-best-scores" },
                  h("span", { class: "bk-best-total" }, fmt(s.totalScore)),
                  h("span", {}, `alignment ${fmt(s.alignmentScore, 0)}`),
                  h("span", {}, `aesthetic ${fmt(s.aestheticScore, 1)}`))
              : h("div", { class: "bk-error" }, `${(s.error || {}).code || "ERROR"}: ${(s.error || {}).message || ""}`),
            line("WHAT", s.whatPrompt),
            line("HOW", s.howPrompt),
            line("combined", s.combinedPrompt),
            line("analysis", s.analysis),
            line("lineage", (s.lineage || []).join(" → ")))),
      ),
    );
  }

  const drawers = {
    header: [drawHeader],
    cancellable: [drawHeader],
    cancel_requested: [drawHeader],
    progress: [drawProgress],
    rows: [drawRows],
    live_row: [drawRows],
    beam: [drawRows],
    thumbs: [drawRows, drawBest],
    best: [drawBest, drawRows],
    best_image: [drawBest],
    best_image_key: [drawBest],
    chart_svg: [drawChart],
    usage: [drawUsage],
    selected: [drawDetail],
    selected_image: [drawDetail],
  };
  const dirty = new Set();
  let scheduled = false;
  function schedule(fns) {
    fns.forEach((f) => dirty.add(f));
    if (scheduled) return;
    scheduled = true;
    // one redraw per frame at most, however many parts changed
    const run = () => {
      scheduled = false;
      if (disposed) return;
      const fns = [...dirty];
      dirty.clear();
      fns.forEach((f) => f());
    };
    if (typeof requestAnimationFrame === "function" && document.visibilityState !== "hidden") requestAnimationFrame(run);
    else setTimeout(run, 16);
  }
  const handlers = [];
  for (const [name, fns] of Object.entries(drawers)) {
    const cb = () => schedule(fns);
    model.on(`change:${name}`, cb);
    handlers.push([`change:${name}`, cb]);
  }
  [drawHeader, drawProgress, drawUsage, drawRows, drawBest, drawChart, drawDetail].forEach((f) => f());

  return () => {
    disposed = true;
    for (const [name, cb] of handlers) model.off(name, cb);
    if (bestURL) URL.revokeObjectURL(bestURL);
    if (selURL) URL.revokeObjectURL(selURL);
  };
}

export default { render };
