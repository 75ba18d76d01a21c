// beamkit widget front end (anywidget ESM). It renders what the kernel's view model sends:
// header, progress, rows (finished iterations), live_row, beam, best (+ best_image),
// chart_svg, usage (calls, tokens, images, cost), thumbs (references to one small model per
// thumbnail), selected (+ image). The stored picture of a candidate (the provider's PNG) is
// asked for on demand with an "original" message, for the full-size view and downloads.
// It never computes scores or rankings itself.

const THUMB_URLS = new Map(); // thumbnail model id -> Promise<object URL>, shared by all views
const OPEN_ROWS = 2; // the latest rows stay open; older ones collapse to one line

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
const iterOf = (key) => Number(String(key).split("-")[0]);

function stepLabel(operation, dimension) {
  return operation === "expand" ? "expand WHAT + HOW" : `refine ${DIM(dimension)}`;
}

function blobFrom(model, attr, fmtAttr) {
  const v = model.get(attr);
  if (!v || !v.byteLength) return null;
  return URL.createObjectURL(new Blob([v], { type: "image/" + (model.get(fmtAttr) || "png") }));
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // no clipboard permission (an iframe, an insecure origin): the old way still works there
    const ta = h("textarea", { class: "bk-offscreen", readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}

function copyButton(text, label = "Copy") {
  return h("button", {
    class: "bk-tool bk-copy", type: "button", title: "copy to the clipboard",
    onclick: async (ev) => {
      const b = ev.currentTarget;
      const ok = await copyText(text || "");
      b.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(() => { b.textContent = label; }, 1500);
    },
  }, label);
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
  const sideEl = h("div", { class: "bk-side" }, bestEl, chartEl);
  const mainEl = h("div", { class: "bk-main" }, rowsEl, sideEl);
  // <dialog>s opened with showModal() live in the browser's top layer: they cover the
  // viewport wherever the widget is scrolled to, even though JupyterLab's cells are
  // `contain`ed (which turns position: fixed into "fixed to the cell").
  // data-lm-suppress-shortcuts keeps JupyterLab's key bindings off the notebook behind them.
  const detailEl = h("dialog", { class: "bk-dialog bk-detail", "aria-label": "candidate", "data-lm-suppress-shortcuts": "true" });
  const viewerEl = h("dialog", { class: "bk-dialog bk-viewer", "aria-label": "picture at full size", "data-lm-suppress-shortcuts": "true" });
  // the person in the loop (person.py): a steered job's review, compare mode, agreement
  const personEl = h("div", { class: "bk-person", hidden: true });
  root.append(headerEl, progressEl, usageEl, personEl, mainEl, detailEl, viewerEl);

  const imgs = new Map(); // card key -> <img> (kept across redraws so nothing flickers)
  const urls = new Set(); // object URLs this view made (revoked when it goes)
  let cards = new Map(); // key -> card, from rows and live_row
  let bestURL = null, bestURLKey = null;
  let selURL = null;
  let disposed = false;
  let wanted = null; // the key this view asked to see; other views of the model ignore it
  let focusKey = null; // the card that takes Tab (one card of the grid, roving tabindex)
  const rowOpen = new Map(); // iteration -> open, where the user toggled it

  // -- the stored picture, asked for on demand ---------------------------------------------
  const viewId = Math.random().toString(36).slice(2);
  let requests = 0;
  const waiting = new Map(); // request id -> {resolve, reject}
  const originals = new Map(); // key -> Promise<{url, name}>
  function original(key) {
    let p = originals.get(key);
    if (!p) {
      const request = `${viewId}:${++requests}`;
      p = new Promise((resolve, reject) => waiting.set(request, { resolve, reject }));
      p.catch(() => originals.delete(key));
      originals.set(key, p);
      model.send({ type: "original", key, request });
    }
    return p;
  }
  function onCustom(msg, buffers) {
    if (!msg || msg.type !== "original") return;
    const w = waiting.get(msg.request);
    if (!w) return; // another view's request
    waiting.delete(msg.request);
    if (msg.error || !buffers || !buffers.length) {
      w.reject(new Error(msg.error || "no picture"));
      return;
    }
    const url = URL.createObjectURL(new Blob([buffers[0]], { type: "image/" + (msg.format || "png") }));
    urls.add(url);
    w.resolve({ url, name: msg.name || `${msg.key}.${msg.format || "png"}` });
  }
  model.on("msg:custom", onCustom);

  function download(key, button) {
    if (button) button.disabled = true;
    return original(key).then(
      ({ url, name }) => {
        const a = h("a", { href: url, download: name, class: "bk-offscreen" });
        root.append(a);
        a.click();
        a.remove();
      },
      (err) => { if (button) button.title = String(err.message || err); },
    ).finally(() => { if (button) button.disabled = false; });
  }

  function pictureTools(key, prompt) {
    return h("div", { class: "bk-pic-tools" },
      h("button", { class: "bk-tool bk-fullsize", type: "button", title: "the picture at full size", onclick: () => openViewer(key, prompt) }, "Full size"),
      h("button", { class: "bk-tool bk-download", type: "button", title: "download the PNG", onclick: (ev) => download(key, ev.currentTarget) }, "Download"),
      copyButton(prompt, "Copy prompt"),
    );
  }

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
      .map(([k, v]) => h("span", { class: "bk-chip", title: k }, `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`));
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
      ...(costLine(hd.cost) ? [costLine(hd.cost)] : []),
      ...(othersLine() ? [othersLine()] : []),
      ...(err ? [err] : []),
    );
  }

  // paid providers: the estimate made before the job ran, and what it has cost so far
  function costLine(cost) {
    if (!cost) return null;
    const bits = [];
    if (cost.estimate) bits.push(["estimate ", h("b", {}, cost.estimate)]);
    if (cost.spent) bits.push([cost.final ? "cost " : "so far ", h("b", { class: "bk-cost-spent" }, cost.spent)]);
    if (cost.unpriced && cost.unpriced.length) bits.push([`unpriced: ${cost.unpriced.join(", ")}`]);
    if (!bits.length) return null;
    const parts = [];
    bits.forEach((b, i) => { if (i) parts.push(" · "); parts.push(...b); });
    return h("div", { class: "bk-cost-line", title: "provider cost: estimated before the job, counted as it runs" }, parts);
  }

  // other jobs of this kernel that still run (their widget may be gone: a re-run cell)
  function othersLine() {
    const others = model.get("others") || [];
    if (!others.length) return null;
    const n = others.length;
    return h("div", { class: "bk-others", role: "status" },
      h("span", {}, `${n} other job${n === 1 ? " is" : "s are"} still running in this kernel (beamkit.jobs() lists them):`),
      others.map((o) => h("span", { class: "bk-others-job", "data-job": o.jobId },
        h("code", { title: o.prompt || "" }, o.jobId),
        h("button", { type: "button", class: "bk-others-cancel",
          onclick: (ev) => { ev.currentTarget.disabled = true; model.send({ type: "cancel_other", jobId: o.jobId }); } }, "Cancel"))));
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

  // -- usage and cost (at the end; live for paid providers) ----------------------------
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
  function cardTitle(card) {
    return `iteration ${iterOf(card.key)}, candidate ${card.id}` + (card.parent ? `, parent ${card.parent}` : "") +
      (card.status === "ok" ? `, score ${fmt(card.total)}` : ", failed");
  }

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
      if (badge) body.push(h("div", { class: `bk-badge bk-badge-${badge}` }, badge, rankBadge(card.rank, iterOf(card.key))));
    } else {
      const e = card.error || {};
      body.push(h("div", { class: "bk-fail-icon" }, "✕"));
      body.push(h("div", { class: "bk-badge bk-badge-failed" }, "failed"));
      body.push(h("div", { class: "bk-reason", title: e.message || "" }, `${e.code || "ERROR"}: ${e.message || ""}`));
    }
    return h(
      "div",
      {
        class: cls.join(" "),
        "data-key": card.key,
        "data-focus": card.key,
        "data-status": card.status,
        title: cardTitle(card),
        "aria-label": cardTitle(card),
        role: "button",
        tabindex: -1,
      },
      h("div", { class: "bk-card-id" }, `#${card.id}`, card.parent ? h("span", { class: "bk-parent" }, ` ← ${card.parent}`) : null),
      body,
    );
  }

  // a tournament job's rank in the beam kept after an iteration (from the view model)
  function rankBadge(rank, iteration) {
    if (!rank) return null;
    return h("span", { class: "bk-rank", title: `rank ${rank} in the beam of iteration ${iteration} (tournament)` }, ` #${rank}`);
  }

  // A parent from an earlier iteration that stays in the beam of this one: the row shows
  // it too, so "kept" plus "carried over" adds up to M.
  function drawCarried(key, iteration, bestKey, ranks) {
    const c = cards.get(key) || { key, id: Number(String(key).split("-")[1]) };
    const cls = ["bk-card", "bk-carried"];
    if (key === bestKey) cls.push("bk-is-best");
    const label = `candidate ${key} (iteration ${iterOf(key)}) carried over into the beam of iteration ${iteration}`;
    return h(
      "div",
      { class: cls.join(" "), "data-carried": key, "data-focus": `${iteration}:${key}`, title: label, "aria-label": label, role: "button", tabindex: -1 },
      h("div", { class: "bk-card-id" }, `#${c.id}`, h("span", { class: "bk-parent" }, ` iter ${iterOf(key)}`)),
      thumbImg(key, "bk-thumb"),
      h("div", { class: "bk-total", title: "total score" }, fmt(c.total)),
      h("div", { class: "bk-badge bk-badge-carried" }, "↻ carried", rankBadge((ranks || {})[key], iteration)),
    );
  }

  // Parents carried over into row i's beam: the next row's parents that are not row i's
  // own candidates; for the last finished row, the current beam says it.
  function carriedOver(rows, idx, beam) {
    const row = rows[idx];
    if (row.status !== "completed") return [];
    const next = rows[idx + 1];
    const members = next && next.status === "completed"
      ? [...new Set(next.cards.map((c) => c.parent).filter(Boolean))]
      : beam; // the last finished iteration: its beam is the current one
    const num = (k) => k.split("-").map(Number);
    return members
      .filter((k) => iterOf(k) !== row.iteration)
      .sort((a, b) => num(a)[0] - num(b)[0] || num(a)[1] - num(b)[1]);
  }

  function drawRows() {
    const rows = [...(model.get("rows") || [])];
    const live = model.get("live_row");
    if (live) rows.push(live);
    cards = new Map(rows.flatMap((r) => r.cards.map((c) => [c.key, c])));
    const beam = model.get("beam") || [];
    const inBeam = new Set(beam);
    const bestKey = (model.get("best") || {}).key;
    const active = document.activeElement;
    const hadFocus = active && rowsEl.contains(active) && active.dataset.focus ? active.dataset.focus : null;
    const out = rows.map((row, idx) => {
      const open = rowOpen.has(row.iteration) ? rowOpen.get(row.iteration) : idx >= rows.length - OPEN_ROWS;
      const carried = carriedOver(rows, idx, beam);
      const kept = row.cards.filter((c) => c.kept).length;
      const scores = row.cards.filter((c) => c.status === "ok").map((c) => c.total);
      const info = [stepLabel(row.operation, row.dimension), `${row.cards.length}/${row.expected ?? "?"}`];
      if (row.status === "completed") {
        if (scores.length) info.push(`best ${fmt(Math.max(...scores))}`);
        info.push(carried.length ? `${kept} kept + ${carried.length} carried over` : `${kept} kept`);
      } else info.push(row.status);
      const toggle = h(
        "button",
        {
          class: "bk-row-toggle", type: "button", "aria-expanded": open ? "true" : "false",
          title: open ? "collapse this iteration" : "show this iteration's candidates",
          onclick: () => {
            rowOpen.set(row.iteration, !open);
            drawRows();
          },
        },
        h("span", { class: "bk-caret" }, open ? "▾" : "▸"), h("b", {}, `Iteration ${row.iteration}`),
      );
      const head = h("div", { class: "bk-row-head" }, toggle, " · ", info.join(" · "));
      if (!open) {
        // one line: what survived this iteration, as small pictures
        const survivors = [...row.cards.filter((c) => c.kept).map((c) => c.key), ...carried];
        return h(
          "div",
          { class: `bk-row bk-row-${row.status} bk-row-collapsed`, "data-iteration": row.iteration },
          head,
          h("div", { class: "bk-mini" }, survivors.map((k) => thumbImg(k, "bk-mini-thumb"))),
        );
      }
      const items = row.cards.map((c) => drawCard(c, inBeam, bestKey));
      for (const k of carried) items.push(drawCarried(k, row.iteration, bestKey, row.ranks));
      const missing = Math.max(0, (row.expected || 0) - row.cards.length);
      if (row.status === "stopped") {
        if (missing) items.push(h("div", { class: "bk-card bk-not-run" }, `${missing} not run`));
      } else {
        for (let k = 0; k < missing; k++) {
          items.push(h("div", { class: "bk-card bk-placeholder" }, h("div", { class: "bk-spinner" })));
        }
      }
      return h(
        "div",
        { class: `bk-row bk-row-${row.status}`, "data-iteration": row.iteration },
        head,
        h("div", { class: "bk-cards" }, items),
      );
    });
    if (!out.length) out.push(h("div", { class: "bk-empty" }, "waiting for the first candidates…"));
    const collapsed = out.filter((r) => r.classList.contains("bk-row-collapsed")).length;
    if (rows.length > OPEN_ROWS) {
      const all = collapsed > 0;
      out.unshift(h("div", { class: "bk-rows-bar" },
        h("button", {
          class: "bk-tool bk-rows-all", type: "button",
          onclick: () => {
            rows.forEach((r) => (all ? rowOpen.set(r.iteration, true) : rowOpen.delete(r.iteration)));
            drawRows();
          },
        }, all ? `Show all ${rows.length} iterations` : "Collapse older iterations"),
        all ? ` ${collapsed} older collapsed` : null));
    }
    rowsEl.replaceChildren(...out);
    const focusable = [...rowsEl.querySelectorAll(".bk-card[data-focus]")];
    const current = focusable.find((c) => c.dataset.focus === focusKey) || focusable[0];
    if (current) {
      current.tabIndex = 0;
      focusKey = current.dataset.focus;
    }
    if (hadFocus) {
      // the card the user was on was redrawn: keep the keyboard where it was
      const again = focusable.find((c) => c.dataset.focus === hadFocus);
      if (again) again.focus({ preventScroll: true });
    }
    placeSide();
  }

  function moveFocus(to) {
    if (!to) return;
    to.focus(); // focusin moves the tab stop
    to.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  // the card above or below: on the nearest line of cards, the one closest horizontally
  function vertical(list, from, dir) {
    const r = from.getBoundingClientRect();
    const x = r.left + r.width / 2;
    const lines = list
      .map((c) => [c, c.getBoundingClientRect()])
      .filter(([, b]) => (dir < 0 ? b.bottom <= r.top + 1 : b.top >= r.bottom - 1));
    if (!lines.length) return null;
    const lineTop = dir < 0 ? Math.max(...lines.map(([, b]) => b.top)) : Math.min(...lines.map(([, b]) => b.top));
    const line = lines.filter(([, b]) => Math.abs(b.top - lineTop) < 2);
    line.sort((a, b) => Math.abs(a[1].left + a[1].width / 2 - x) - Math.abs(b[1].left + b[1].width / 2 - x));
    return line[0][0];
  }

  function openCard(cardEl) {
    const key = cardEl.dataset.key || cardEl.dataset.carried;
    if (key) select(key);
  }

  rowsEl.addEventListener("click", (ev) => {
    const cardEl = ev.target.closest(".bk-card[data-focus]");
    if (!cardEl || !rowsEl.contains(cardEl)) return;
    cardEl.focus({ preventScroll: true }); // so that Escape brings the keyboard back here
    openCard(cardEl);
  });
  // however a card got the focus (click, Tab, a script), it is the one Tab comes back to
  rowsEl.addEventListener("focusin", (ev) => {
    const cardEl = ev.target.closest && ev.target.closest(".bk-card[data-focus]");
    if (!cardEl || cardEl.dataset.focus === focusKey) return;
    rowsEl.querySelectorAll(".bk-card[tabindex='0']").forEach((c) => { c.tabIndex = -1; });
    cardEl.tabIndex = 0;
    focusKey = cardEl.dataset.focus;
  });
  rowsEl.addEventListener("keydown", (ev) => {
    const cardEl = ev.target.closest && ev.target.closest(".bk-card[data-focus]");
    if (!cardEl || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const list = [...rowsEl.querySelectorAll(".bk-card[data-focus]")];
    const i = list.indexOf(cardEl);
    let to;
    if (ev.key === "Enter" || ev.key === " ") {
      openCard(cardEl);
    } else if (ev.key === "ArrowRight") to = list[i + 1];
    else if (ev.key === "ArrowLeft") to = list[i - 1];
    else if (ev.key === "ArrowDown") to = vertical(list, cardEl, 1);
    else if (ev.key === "ArrowUp") to = vertical(list, cardEl, -1);
    else if (ev.key === "Home") to = list[0];
    else if (ev.key === "End") to = list[list.length - 1];
    else return;
    // these keys are ours here: not JupyterLab's (cell navigation) nor the page's (scrolling)
    ev.preventDefault();
    ev.stopPropagation();
    moveFocus(to);
  });

  // -- best so far, kept in view ----------------------------------------------------------
  function critiqueOf(step) {
    if (step.critique !== undefined) return step.critique;
    return (cards.get(step.key) || {}).critique;
  }

  function drawBest() {
    const b = model.get("best");
    if (!b) {
      bestEl.replaceChildren(h("div", { class: "bk-section-title" }, "Best so far"), h("div", { class: "bk-empty" }, "no scored candidate yet"));
      placeSide();
      return;
    }
    const key = model.get("best_image_key");
    if (key !== bestURLKey) {
      if (bestURL) URL.revokeObjectURL(bestURL);
      bestURL = blobFrom(model, "best_image", "best_image_format");
      bestURLKey = key;
    }
    const img = h("img", {
      class: "bk-best-image", alt: `best candidate ${key || ""}`, "data-key": key || "", title: "click: the picture at full size",
      onclick: () => key && openViewer(key, b.combined),
    });
    if (bestURL) img.src = bestURL;
    else img.classList.add("bk-loading");
    const prompt = (label, text, cls) =>
      h("div", { class: `bk-prompt-block ${cls}` },
        h("div", { class: "bk-label" }, label, copyButton(text)),
        h("div", { class: "bk-text" }, text || ""));
    const lineage = (b.lineage || []).map((s) => {
      const crit = critiqueOf(s);
      return h(
        "li",
        { class: "bk-step", "data-key": s.key, title: "click: this step in full", onclick: () => select(s.key) },
        thumbImg(s.key, "bk-step-thumb"),
        h(
          "div",
          { class: "bk-step-body" },
          h("div", { class: "bk-step-head" }, `iter ${s.iteration} #${s.candidateId} · ${stepLabel(s.operation, s.dimension)} · ${fmt(s.total)}`),
          crit ? h("div", { class: "bk-step-critique", title: crit }, h("b", {}, "critique "), crit) : null,
          s.what !== undefined ? h("div", { class: "bk-step-text" }, h("b", {}, crit ? "→ WHAT " : "WHAT "), s.what) : null,
          s.how !== undefined ? h("div", { class: "bk-step-text" }, h("b", {}, crit ? "→ HOW " : "HOW "), s.how) : null,
        ),
      );
    });
    const open = bestEl.querySelector("details.bk-lineage")?.open ?? true;
    bestEl.replaceChildren(
      h("div", { class: "bk-section-title" }, b.final ? "Best" : "Best so far", h("span", { class: "bk-best-key" }, ` iter ${b.iteration} #${b.candidateId}`)),
      img,
      key ? pictureTools(key, b.combined) : null,
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
      h("details", { class: "bk-lineage", open },
        h("summary", {}, (n => `Lineage: ${n} step${n === 1 ? "" : "s"} from iteration 0`)((b.lineage || []).length)),
        h("ol", {}, lineage)),
    );
    placeSide();
  }

  function drawChart() {
    const svg = model.get("chart_svg") || "";
    chartEl.replaceChildren(h("div", { class: "bk-section-title" }, "Score per iteration"));
    const box = h("div", { class: "bk-chart" });
    box.innerHTML = svg; // generated by beamkit.widget.chart, text escaped there
    chartEl.append(box);
    placeSide();
  }

  // The side column follows the scroll, so the best picture stays in view beside a tall
  // grid. CSS position: sticky cannot do it here: the output area's overflow: hidden
  // ancestors stop it, so the column is moved inside the widget's own box instead. When the
  // rows are taller than the view, the column is capped to the view's height and scrolls
  // inside, so that it can follow them all the way down.
  let sideFrame = 0;
  function placeSide() {
    if (sideFrame || disposed) return;
    sideFrame = requestAnimationFrame(() => {
      sideFrame = 0;
      if (disposed || !root.isConnected) return;
      let viewTop = 0, viewBottom = window.innerHeight; // what can be seen: the viewport, cut by scrolled ancestors
      for (let p = root.parentElement; p; p = p.parentElement) {
        const oy = getComputedStyle(p).overflowY;
        if (oy !== "auto" && oy !== "scroll") continue;
        const r = p.getBoundingClientRect();
        viewTop = Math.max(viewTop, r.top);
        viewBottom = Math.min(viewBottom, r.bottom);
      }
      const beside = Math.abs(sideEl.offsetTop - rowsEl.offsetTop) < 2;
      const cap = beside && rowsEl.offsetHeight > viewBottom - viewTop ? Math.max(240, Math.floor(viewBottom - viewTop - 16)) : 0;
      const capText = cap ? `${cap}px` : "";
      if (sideEl.style.maxHeight !== capText) {
        sideEl.style.maxHeight = capText;
        sideEl.classList.toggle("bk-side-capped", cap > 0);
      }
      const room = mainEl.offsetHeight - sideEl.offsetHeight;
      if (!beside || room <= 0) {
        sideEl.style.transform = "";
        return;
      }
      const naturalTop = mainEl.getBoundingClientRect().top + (sideEl.offsetTop - mainEl.offsetTop);
      const off = Math.max(0, Math.min(room, viewTop + 8 - naturalTop));
      sideEl.style.transform = off > 0 ? `translateY(${Math.round(off)}px)` : "";
    });
  }
  const onScroll = () => placeSide();
  document.addEventListener("scroll", onScroll, { capture: true, passive: true });
  window.addEventListener("resize", onScroll);
  const resizer = typeof ResizeObserver === "function" ? new ResizeObserver(onScroll) : null;
  if (resizer) resizer.observe(root);

  // -- a candidate in full --------------------------------------------------------------
  function select(key) {
    wanted = key;
    model.send({ type: "select", key });
    drawDetail();
  }

  detailEl.addEventListener("close", () => {
    if (detailEl.open) return; // reopened (another card) before this event came
    const was = wanted;
    wanted = null;
    if (was) model.send({ type: "select", key: null });
    const back = [...rowsEl.querySelectorAll(".bk-card[data-focus]")].find((c) => c.dataset.focus === focusKey);
    if (back && root.isConnected) back.focus({ preventScroll: true });
  });
  // a click on the dialog itself, not on its card, is a click on the backdrop
  detailEl.addEventListener("click", (ev) => { if (ev.target === detailEl) detailEl.close(); });
  viewerEl.addEventListener("click", (ev) => { if (ev.target === viewerEl || ev.target.classList.contains("bk-viewer-pic")) viewerEl.close(); });
  for (const d of [detailEl, viewerEl]) {
    // Escape closes the dialog on top, whatever JupyterLab binds to Escape
    d.addEventListener("keydown", (ev) => {
      if (ev.key !== "Escape") return;
      ev.preventDefault();
      ev.stopPropagation();
      d.close();
    });
  }

  const block = (label, text, cls, tools) =>
    text ? h("div", { class: `bk-prompt-block ${cls || ""}` }, h("div", { class: "bk-label" }, label, tools || null), h("div", { class: "bk-text" }, text)) : null;

  function listBlock(label, items, cls) {
    if (!Array.isArray(items) || !items.length) return null;
    return h("div", { class: `bk-prompt-block ${cls}` }, h("div", { class: "bk-label" }, label), h("ul", {}, items.map((t) => h("li", {}, String(t)))));
  }

  function changedPrompt(s) {
    const op = s.operation || (s.iteration === 0 ? "expand" : "refine");
    if (op === "expand") return [["WHAT", s.whatPrompt], ["HOW", s.howPrompt]];
    return [[DIM(s.dimension), s.dimension === "how" ? s.howPrompt : s.whatPrompt]];
  }

  function drawDetailLineage(s) {
    const steps = Array.isArray(s.steps) && s.steps.length
      ? s.steps
      : (s.lineage || []).map((k) => ({ key: k, iteration: iterOf(k), candidateId: Number(k.split("-")[1]) }));
    if (steps.length < 2) return null;
    return h("div", { class: "bk-detail-lineage" },
      h("div", { class: "bk-label" }, `Lineage: how it got here (${steps.length} steps)`),
      h("ol", {}, steps.map((st) => {
        const card = cards.get(st.key) || {};
        const crit = st.critique ?? card.critique;
        const total = st.totalScore ?? card.total;
        const here = st.key === s.key;
        return h(
          "li",
          { class: `bk-step${here ? " bk-step-here" : ""}`, "data-key": st.key, onclick: here ? null : () => select(st.key) },
          thumbImg(st.key, "bk-step-thumb"),
          h("div", { class: "bk-step-body" },
            h("div", { class: "bk-step-head" }, `iter ${st.iteration} #${st.candidateId} · ${fmt(total)}`),
            crit ? h("div", { class: "bk-step-critique bk-full" }, h("b", {}, "critique of its parent "), crit) : null,
            changedPrompt(st).filter(([, t]) => t).map(([label, t]) => h("div", { class: "bk-step-text" }, h("b", {}, `${crit ? "→ " : ""}${label} `), t))),
        );
      })));
  }

  // a tournament job: the candidate's ranks, then each comparison with the judge's reason;
  // a click on an opponent opens that one, as a lineage step does
  function drawTournament(s) {
    const t = s.tournament;
    if (!t) return null;
    const ranks = t.ranks.map((r) => `#${r.rank} after iteration ${r.iteration}`).join(", ");
    const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
    const bouts = t.bouts.map((b) => {
      const open = () => select(b.opponent);
      return h("li", {
        class: `bk-bout ${b.won ? "bk-bout-won" : "bk-bout-lost"}`, "data-key": b.opponent, role: "button", tabindex: 0,
        title: `open ${b.opponent}`, onclick: open,
        onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); ev.stopPropagation(); open(); } },
      },
        thumbImg(b.opponent, "bk-step-thumb"),
        h("div", { class: "bk-step-body" },
          h("div", { class: "bk-step-head" },
            h("span", { class: "bk-bout-verdict" }, b.won ? "won" : "lost"), ` against ${b.opponent} · iteration ${b.iteration}`,
            h("span", { class: "bk-bout-shown" }, ` · shown ${b.shownFirst ? "first" : "second"}`)),
          b.reason ? h("div", { class: "bk-bout-reason" }, b.reason) : null));
    });
    return h("div", { class: "bk-detail-tournament" },
      h("div", { class: "bk-label" }, `Tournament: ${plural(t.wins, "win", "wins")}, ${plural(t.losses, "loss", "losses")}`),
      h("div", { class: "bk-tournament-ranks" }, ranks ? `rank ${ranks}` : "not kept in a beam"),
      bouts.length ? h("ol", {}, bouts) : h("div", { class: "bk-empty" }, "no comparison"));
  }

  function drawDetail() {
    if (!wanted) {
      if (detailEl.open) detailEl.close();
      detailEl.replaceChildren();
      if (selURL) URL.revokeObjectURL(selURL);
      selURL = null;
      return;
    }
    const sel = model.get("selected");
    const s = sel && sel.key === wanted ? sel : null;
    if (selURL) URL.revokeObjectURL(selURL);
    selURL = s ? blobFrom(model, "selected_image", "selected_image_format") : null;
    const card = cards.get(wanted) || {};
    const title = h("div", { class: "bk-section-title", id: `bk-detail-title-${viewId}` },
      `Iteration ${iterOf(wanted)} · candidate #${wanted.split("-")[1]}`,
      s && s.iteration > 0 ? ` · ${stepLabel("refine", s.dimension)}` : s ? " · expand WHAT + HOW" : "",
      s && s.parent ? ` · parent ${s.parent}` : "");
    const close = h("button", { class: "bk-close", type: "button", title: "close (Esc)", "aria-label": "close", autofocus: true, onclick: () => detailEl.close() }, "×");
    let body;
    if (!s) {
      body = h("div", { class: "bk-detail-body" }, h("div", { class: "bk-empty" }, "loading…"));
    } else {
      const pic = s.status === "ok"
        ? h("div", { class: "bk-detail-pic" },
            selURL
              ? h("img", { class: "bk-detail-image", src: selURL, alt: `candidate ${s.key}`, title: "click: full size", onclick: () => openViewer(s.key, s.combinedPrompt) })
              : h("div", { class: "bk-detail-image bk-loading" }),
            pictureTools(s.key, s.combinedPrompt))
        : null;
      const parentCrit = s.critique ?? card.critique;
      const strengths = s.strengths ?? card.strengths;
      const weaknesses = s.weaknesses ?? card.weaknesses;
      // the critique this candidate got as a parent: its children carry it
      const child = [...cards.values()].find((c) => c.parent === s.key && c.critique);
      body = h("div", { class: "bk-detail-main" },
        h("div", { class: "bk-detail-body" },
          pic,
          h("div", { class: "bk-detail-text" },
            s.status === "ok"
              ? h("div", { class: "bk-best-scores" },
                  h("span", { class: "bk-best-total", title: "total score" }, fmt(s.totalScore)),
                  h("span", { title: "alignment (0–100)" }, `alignment ${fmt(s.alignmentScore, 0)}`),
                  h("span", { title: "aesthetic (0–10)" }, `aesthetic ${fmt(s.aestheticScore, 1)}`))
              : h("div", { class: "bk-error" }, `${(s.error || {}).code || "ERROR"}: ${(s.error || {}).message || ""}`),
            block(s.parent ? `critique of parent ${s.parent} (what this refinement answered)` : "critique", parentCrit, "bk-critique"),
            block("WHAT", s.whatPrompt, "bk-what", copyButton(s.whatPrompt)),
            block("HOW", s.howPrompt, "bk-how", copyButton(s.howPrompt)),
            block("combined", s.combinedPrompt, "bk-combined", copyButton(s.combinedPrompt)),
            h("div", { class: "bk-sw" }, listBlock("strengths", strengths, "bk-strengths"), listBlock("weaknesses", weaknesses, "bk-weaknesses")),
            block("the judge's analysis", s.analysis, "bk-analysis"),
            child ? block(`its critique (refined by iteration ${iterOf(child.key)})`, child.critique, "bk-own-critique") : null)),
        drawTournament(s),
        drawDetailLineage(s));
    }
    const focusInside = detailEl.open && (detailEl.contains(document.activeElement) || document.activeElement === document.body);
    detailEl.setAttribute("aria-labelledby", title.id);
    detailEl.replaceChildren(h("div", { class: "bk-detail-card" }, h("div", { class: "bk-detail-head" }, title, close), body));
    if (!detailEl.open && root.isConnected) detailEl.showModal();
    else if (focusInside) close.focus({ preventScroll: true }); // the redraw took the focused element away
  }

  // -- one picture at full size ---------------------------------------------------------
  function openViewer(key, prompt) {
    const shown = key === bestURLKey && bestURL ? bestURL : (model.get("selected") || {}).key === key ? selURL : null;
    const img = h("img", { class: "bk-viewer-image", alt: `candidate ${key} at full size`, "data-key": key });
    if (shown) img.src = shown;
    const sizeEl = h("span", { class: "bk-viewer-size" });
    img.addEventListener("load", () => { sizeEl.textContent = `${img.naturalWidth} × ${img.naturalHeight}`; });
    // the stored PNG, not the WebP sent for the panels: what is shown is what downloads
    original(key).then(
      ({ url }) => { if (!disposed) { img.src = url; img.dataset.original = "1"; } },
      (err) => { sizeEl.textContent = `the stored picture is not available: ${err.message || err}`; },
    );
    const fit = h("button", {
      class: "bk-tool bk-fit", type: "button", title: "toggle fit to window / actual pixels",
      onclick: (ev) => { const on = viewerEl.classList.toggle("bk-actual"); ev.currentTarget.textContent = on ? "Fit" : "1:1"; },
    }, "1:1");
    viewerEl.classList.remove("bk-actual");
    viewerEl.replaceChildren(
      h("div", { class: "bk-viewer-bar" },
        h("span", { class: "bk-section-title" }, `iteration ${iterOf(key)} · candidate #${key.split("-")[1]}`), sizeEl,
        h("span", { class: "bk-spacer" }),
        fit,
        h("button", { class: "bk-tool bk-download", type: "button", onclick: (ev) => download(key, ev.currentTarget) }, "Download"),
        copyButton(prompt, "Copy prompt"),
        h("button", { class: "bk-close", type: "button", title: "close (Esc)", "aria-label": "close", autofocus: true, onclick: () => viewerEl.close() }, "×")),
      h("div", { class: "bk-viewer-pic" }, img),
    );
    if (!viewerEl.open && root.isConnected) viewerEl.showModal();
  }

  // -- the person in the loop ----------------------------------------------------------------
  function drawPerson() {
    const p = model.get("person");
    personEl.hidden = !p;
    if (!p) return;
    const parts = [];
    if (p.review) {
      const r = p.review;
      const picked = new Set(r.proposed);
      const boxes = r.pool.map((c) => {
        const box = h("input", { type: "checkbox", class: "bk-review-pick", value: c.key });
        box.checked = picked.has(c.key);
        return h("label", { class: "bk-review-cand" }, box, thumbImg(c.key, "bk-review-thumb"),
          h("span", {}, `${c.key} · ${c.score == null ? "–" : c.score.toFixed(1)}`));
      });
      const chosen = () => boxes.map((b) => b.querySelector("input")).filter((b) => b.checked).map((b) => b.value);
      parts.push(h("div", { class: "bk-review", role: "group", "aria-label": "review the beam" },
        h("span", { class: "bk-section-title" }, `Review of iteration ${r.iteration}: keep up to ${r.M}`),
        h("div", { class: "bk-review-pool" }, ...boxes),
        h("div", { class: "bk-review-bar" },
          h("button", { type: "button", class: "bk-review-keep", onclick: () => model.send({ type: "keep", keys: r.proposed }) }, "Keep proposed"),
          h("button", { type: "button", class: "bk-review-selected", onclick: () => model.send({ type: "keep", keys: chosen() }) }, "Keep selected"),
          h("button", { type: "button", class: "bk-review-stop", onclick: () => model.send({ type: "stop_review" }) }, "Stop here"))));
    }
    if (p.canRate) {
      const on = !!p.compare || !!p.compareDone;
      parts.push(h("div", { class: "bk-rate-bar" },
        h("button", { type: "button", class: "bk-compare-toggle", "aria-pressed": String(on),
          onclick: () => model.send({ type: "compare", on: !on }) }, on ? "Close compare" : "Compare pairs"),
        h("span", { class: "bk-rate-count" }, `${p.ratings} rating${p.ratings === 1 ? "" : "s"}`),
        agreementText(p.agreement)));
    }
    if (p.compare) {
      const { a, b } = p.compare;
      const rate = (winner) => model.send({ type: "rate", a, b, winner });
      const side = (key, winner, label) => h("button", { type: "button", class: `bk-compare-side bk-compare-${winner}`,
        onclick: () => rate(winner) }, thumbImg(key, "bk-compare-img"), h("span", {}, `${label} · ${key}`));
      // data-lm-suppress-shortcuts and stopPropagation: JupyterLab's command mode binds 1 and 2
      // (make the cell a heading), which are the compare mode's keys here
      const pane = h("div", { class: "bk-compare", tabindex: "0", role: "group", "aria-label": "which is better?",
        "data-lm-suppress-shortcuts": "true",
        onkeydown: (ev) => {
          if (ev.ctrlKey || ev.metaKey || ev.altKey) return; // Ctrl+S still saves
          const k = ev.key.toLowerCase();
          if (k === "arrowleft" || k === "1") rate("a");
          else if (k === "arrowright" || k === "2") rate("b");
          else if (k === "s") rate("skip");
          else return;
          ev.preventDefault();
          ev.stopPropagation();
        } },
        h("div", { class: "bk-compare-pair" }, side(a, "a", "left is better (←/1)"), side(b, "b", "right is better (→/2)")),
        h("button", { type: "button", class: "bk-compare-skip", onclick: () => rate("skip") }, "Skip (S)"));
      parts.push(pane);
      setTimeout(() => { if (!disposed && pane.isConnected) pane.focus(); }, 0);
    } else if (p.compareDone) {
      parts.push(h("div", { class: "bk-compare-done" }, "Every pair is rated or follows from your ratings."));
    }
    if (p.message) parts.push(h("div", { class: "bk-person-message", role: "alert" }, p.message));
    personEl.replaceChildren(...parts);
  }

  function agreementText(a) {
    if (!a) return h("span", { class: "bk-agreement" });
    const f = (x) => (x == null ? "–" : x.toFixed(2));
    return h("span", { class: "bk-agreement", title: `${a.disagreements.length} rating(s) against the model's order` },
      `agreement: Spearman ${f(a.spearman)} · Kendall ${f(a.kendall)} · top-${a.k} ${f(a.topK)} · ${a.disagreements.length} disagreement(s)`);
  }

  const drawers = {
    person: [drawPerson],
    header: [drawHeader],
    cancellable: [drawHeader],
    cancel_requested: [drawHeader],
    others: [drawHeader],
    progress: [drawProgress],
    rows: [drawRows],
    live_row: [drawRows],
    beam: [drawRows],
    thumbs: [drawRows, drawBest, drawPerson],
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
  [drawHeader, drawProgress, drawUsage, drawPerson, drawRows, drawBest, drawChart].forEach((f) => f());

  return () => {
    disposed = true;
    for (const [name, cb] of handlers) model.off(name, cb);
    model.off("msg:custom", onCustom);
    document.removeEventListener("scroll", onScroll, { capture: true });
    window.removeEventListener("resize", onScroll);
    if (resizer) resizer.disconnect();
    if (sideFrame) cancelAnimationFrame(sideFrame);
    if (detailEl.open) detailEl.close();
    if (viewerEl.open) viewerEl.close();
    if (bestURL) URL.revokeObjectURL(bestURL);
    if (selURL) URL.revokeObjectURL(selURL);
    for (const u of urls) URL.revokeObjectURL(u);
  };
}

export default { render };
