// One CSV cell, RFC 4180-quoted, that no spreadsheet runs as a formula: a text starting with
// = + - @ tab or carriage return (after any ') gets a leading ', the rule of facecluster/csv_cells.py
// (whose readers take it off again). Numbers are left as they are. Shared by report.html and ask.html.
window.facecluster = window.facecluster || {};
window.facecluster.csvCell = function (value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (typeof value === "string" && /^'*[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) || text !== text.trim() ? '"' + text.replace(/"/g, '""') + '"' : text;
};
