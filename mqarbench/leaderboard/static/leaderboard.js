// Sortable tables, the preset/board selector and the model-family filter. No dependencies;
// works from file://.
"use strict";

function cellValue(row, index, type) {
  const cell = row.cells[index];
  const raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
  if (raw === "") return null; // not run: always sorted last
  return type === "num" ? parseFloat(raw) : raw.toLowerCase();
}

function sortTable(table, index, direction) {
  const th = table.tHead.rows[0].cells[index];
  const type = th.getAttribute("data-type") || "text";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const sign = direction === "ascending" ? 1 : -1;
  rows.sort(function (a, b) {
    const x = cellValue(a, index, type), y = cellValue(b, index, type);
    if (x === null || y === null) return (x === null) - (y === null);
    if (x < y) return -sign;
    if (x > y) return sign;
    return 0;
  });
  rows.forEach(function (row) { body.appendChild(row); });
  Array.from(table.tHead.rows[0].cells).forEach(function (c) { c.removeAttribute("aria-sort"); });
  th.setAttribute("aria-sort", direction);
}

function initSortable(table) {
  Array.from(table.tHead.rows[0].cells).forEach(function (th, index) {
    const button = th.querySelector("button");
    if (!button) return;
    button.addEventListener("click", function () {
      const current = th.getAttribute("aria-sort");
      // Numbers start high-to-low (best first), text starts A-Z; a second click reverses.
      const first = th.getAttribute("data-type") === "num" ? "descending" : "ascending";
      const next = current ? (current === "ascending" ? "descending" : "ascending") : first;
      sortTable(table, index, next);
    });
  });
}

function initBoards() {
  const select = document.getElementById("board-select");
  if (!select) return;
  const boards = Array.from(document.querySelectorAll("section.board"));
  function show(id) {
    boards.forEach(function (b) { b.hidden = b.getAttribute("data-board") !== id; });
  }
  const fromHash = window.location.hash.replace(/^#board-/, "");
  if (boards.some(function (b) { return b.getAttribute("data-board") === fromHash; })) select.value = fromHash;
  show(select.value);
  select.addEventListener("change", function () {
    show(select.value);
    history.replaceState(null, "", "#board-" + select.value);
  });
}

function initFamilies() {
  // Hide every model row and figure of another family; "" shows all. Kept in the URL (?family=).
  const select = document.getElementById("family-select");
  if (!select) return;
  function show(family) {
    document.querySelectorAll("[data-family]").forEach(function (el) {
      el.hidden = family !== "" && el.getAttribute("data-family") !== family;
    });
  }
  const fromQuery = new URLSearchParams(window.location.search).get("family") || "";
  if (Array.from(select.options).some(function (o) { return o.value === fromQuery; })) select.value = fromQuery;
  show(select.value);
  select.addEventListener("change", function () { show(select.value); });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("table.sortable").forEach(initSortable);
  initBoards();
  initFamilies();
});
