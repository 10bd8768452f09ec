(function () {
  const D = JSON.parse(document.getElementById("rows-data").textContent);
  const rows = D.rows, terms = D.terms;
  const $ = (id) => document.getElementById(id);
  const cols = [["s", "step"], ["id", "prompt id"], ["p", "prompt"], ["r", "rationale"], ["rw", "reward"],
    ["adv", "advantage"]].concat(terms.map((t, i) => ["t" + i, t])).concat([["len", "words"], ["tr", "trunc."]]);
  const get = (row, key) => key[0] === "t" && key !== "tr" ? row.t[+key.slice(1)] : row[key];
  const state = {page: 0, desc: true, size: PAGE_SIZE};
  const steps = [...new Set(rows.map((r) => r.s))].sort((a, b) => a - b);
  for (const s of steps) $("f-step").add(new Option(String(s), String(s)));
  for (const id of [...new Set(rows.map((r) => r.id))].slice(0, 2000)) $("ids").append(new Option(id));
  for (const [k, label] of cols) if (!["id", "p", "r", "tr"].includes(k)) $("f-sort").add(new Option(label, k));
  $("f-sort").value = "rw";
  const sizes = [...$("f-size").options].map((o) => +o.value);
  if (!sizes.includes(PAGE_SIZE)) $("f-size").add(new Option(String(PAGE_SIZE)));
  $("f-size").value = String(PAGE_SIZE);
  const tr = document.createElement("tr");
  for (const [, label] of cols) { const th = document.createElement("th"); th.textContent = label; tr.append(th); }
  document.querySelector("#rollouts thead").append(tr);
  const absAdv = Math.max(1e-9, ...rows.map((r) => Math.abs(r.adv || 0)));
  const fmt = (v, k) => v === null || v === undefined ? "–" :
    (typeof v === "number" && k !== "s" && k !== "len" ? (v + 0).toPrecision(4) : String(v));
  function selected() {
    const step = $("f-step").value, id = $("f-id").value.trim(), text = $("f-text").value.trim().toLowerCase();
    const key = $("f-sort").value, sign = state.desc ? -1 : 1;
    const out = rows.filter((r) => (step === "" || String(r.s) === step) && (id === "" || r.id === id) &&
      (text === "" || (r.r + "\n" + r.p).toLowerCase().includes(text)));
    const val = (r) => { const v = get(r, key); return v === null || v === undefined ? null : v; };
    return out.sort((a, b) => {
      const x = val(a), y = val(b);
      if (x === null) return y === null ? 0 : 1;
      if (y === null) return -1;
      return sign * (x - y);
    });
  }
  function render() {
    const sel = selected(), pages = Math.max(1, Math.ceil(sel.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    const body = document.querySelector("#rollouts tbody");
    body.replaceChildren();
    for (const r of sel.slice(state.page * state.size, (state.page + 1) * state.size)) {
      const tr = document.createElement("tr");
      for (const [k] of cols) {
        const td = document.createElement("td"), v = get(r, k);
        if (k === "r") td.className = "rat"; else if (k === "p") td.className = "prm";
        else if (k !== "id") td.className = "num";
        td.textContent = k === "tr" ? (v === true ? "yes" : v === false ? "" : "?") : (k === "r" || k === "p" ||
          k === "id" ? v : fmt(v, k));
        if (k === "adv" && typeof v === "number") {
          const a = Math.min(1, Math.abs(v) / absAdv) * 0.45;
          td.style.background = v >= 0 ? `rgba(40,160,60,${a})` : `rgba(220,50,50,${a})`;
        }
        tr.append(td);
      }
      body.append(tr);
    }
    $("status").textContent = `page ${state.page + 1} of ${pages} · ${sel.length} of ${rows.length} rows match`;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    document.body.dataset.rowsRendered = String(body.children.length);
  }
  const reset = () => { state.page = 0; render(); };
  for (const id of ["f-step", "f-sort"]) $(id).addEventListener("change", reset);
  for (const id of ["f-id", "f-text"]) $(id).addEventListener("input", reset);
  $("f-size").addEventListener("change", () => { state.size = +$("f-size").value; reset(); });
  $("f-dir").addEventListener("click", () => {
    state.desc = !state.desc; $("f-dir").textContent = state.desc ? "↓ desc" : "↑ asc"; reset();
  });
  $("prev").addEventListener("click", () => { state.page--; render(); });
  $("next").addEventListener("click", () => { state.page++; render(); });
  render();
  window.addEventListener("load", () => {
    const imgs = [...document.querySelectorAll("img.plot")];
    document.body.dataset.plotsLoaded = String(imgs.filter((i) => i.complete && i.naturalWidth > 0).length);
  });
})();
