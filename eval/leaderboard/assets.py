"""The CSS and JavaScript inlined in the leaderboard page (no network, no framework)."""

CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --soft: #eaeef2; --head: #f6f8fa;
        --pos: #1a7f37; --neg: #cf222e; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 14px/1.45 -apple-system, BlinkMacSystemFont, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
header { padding: 22px 32px 14px; border-bottom: 1px solid var(--line); background: linear-gradient(#f6f8fa, #fff); }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; letter-spacing: -0.01em; }
header .sub { margin: 0; color: var(--muted); }
main { padding: 8px 32px 40px; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--soft); }
h3 { font-size: 15px; margin: 22px 0 8px; }
p.note { color: var(--muted); max-width: 980px; margin: 12px 0; }
nav.formats a { margin-right: 12px; color: var(--accent); text-decoration: none; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: max-content; min-width: 100%; }
th, td { padding: 7px 12px; text-align: right; white-space: nowrap; }
th { background: var(--head); font-weight: 600; border-bottom: 1px solid var(--line); position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #eef1f4; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 10px; color: var(--accent); }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 10px; color: var(--accent); }
td { border-bottom: 1px solid var(--soft); vertical-align: top; font-variant-numeric: tabular-nums; }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:hover td { background: #f6f8fa; }
th.text, td.text { text-align: left; }
td.label { font-weight: 600; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 8px; }
.pill { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; border: 1px solid var(--line); }
.pill.base { background: #f6f8fa; color: var(--muted); }
.pill.tuned { background: #ddf4ff; color: #0550ae; border-color: #b6e3ff; }
.score { font-weight: 600; }
.ci { color: var(--muted); font-size: 12px; font-weight: 400; }
.delta { font-size: 12px; }
.delta.pos { color: var(--pos); }
.delta.neg { color: var(--neg); }
.delta.sig { font-weight: 700; }
.missing { color: #afb8c1; }
th.cluster { border-left: 1px solid var(--line); }
td.cluster { border-left: 1px solid var(--soft); }
.task-col { display: none; background: #fbfcfd; }
th.task-col { font-weight: 500; color: var(--muted); }
button.expand { margin-left: 6px; border: 1px solid var(--line); background: #fff; border-radius: 4px;
                cursor: pointer; font-size: 11px; padding: 0 5px; color: var(--accent); }
.plots { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
figure { margin: 16px 0; flex: 0 1 auto; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--soft); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; }
details { margin: 12px 0; }
summary { cursor: pointer; color: var(--accent); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
footer { padding: 16px 32px 28px; color: var(--muted); border-top: 1px solid var(--soft); font-size: 12px; }
"""

# Click a header to sort by it (numbers best-first on the first click, text A-Z; again to reverse);
# cells without a value (data-v absent) always go last. Expand buttons show a cluster's tasks.
JS = """
(function () {
  function sortBy(table, th) {
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var num = th.dataset.type === 'num';
    var cur = th.getAttribute('aria-sort');
    var dir = cur === 'descending' ? 'ascending' : cur === 'ascending' ? 'descending' : (num ? 'descending' : 'ascending');
    table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx].dataset.v, y = b.cells[idx].dataset.v;
      var xm = x === undefined, ym = y === undefined;
      if (xm || ym) { return (xm - ym) || (a.dataset.order - b.dataset.order); }
      var c = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      if (dir === 'descending') { c = -c; }
      return c || (a.dataset.order - b.dataset.order);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead th').forEach(function (th) {
      th.addEventListener('click', function (e) { if (!e.target.closest('button')) { sortBy(table, th); } });
    });
  });
  document.querySelectorAll('button.expand').forEach(function (btn) {
    btn.addEventListener('click', function () {
      var table = btn.closest('table');
      var open = table.classList.toggle('show-' + btn.dataset.group);
      btn.setAttribute('aria-expanded', open ? 'true' : 'false');
      btn.textContent = open ? '\\u25BE tasks' : '\\u25B8 tasks';
    });
  });
})();
"""
