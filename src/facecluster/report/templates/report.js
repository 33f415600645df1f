// The hover tooltip of the scatter plots. Bokeh's hover callback calls show()/hide();
// values are set with textContent and img.src only, never parsed as HTML.
window.facecluster = window.facecluster || {};
window.facecluster.tip = (function () {
  const tip = document.getElementById("fc-tip");
  const image = tip.querySelector("img");
  const none = tip.querySelector(".fc-tip-none");
  const path = tip.querySelector(".fc-tip-path");
  const meta = tip.querySelector(".fc-tip-meta");
  let mouseX = 0, mouseY = 0;

  function place() {
    const gap = 14;
    let x = mouseX + gap, y = mouseY + gap;
    if (x + tip.offsetWidth > window.innerWidth - 4) x = mouseX - tip.offsetWidth - gap;
    if (y + tip.offsetHeight > window.innerHeight - 4) y = mouseY - tip.offsetHeight - gap;
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = Math.max(4, y) + "px";
  }

  document.addEventListener("mousemove", function (event) {
    mouseX = event.clientX;
    mouseY = event.clientY;
    const target = event.target;
    if (!(target instanceof Element) || !target.closest(".fc-plot")) tip.hidden = true;
    else if (!tip.hidden) place();
  }, true);

  return {
    show: function (point) {
      if (point.thumb) {
        image.src = point.thumb;
        image.hidden = false;
        none.hidden = true;
      } else {
        image.removeAttribute("src");
        image.hidden = true;
        none.hidden = false;
      }
      path.textContent = point.path;
      meta.textContent = "true: " + point.label + " (" + point.split + ") · cluster " + point.cluster +
        (point.cluster === "noise" ? "" : " → " + point.mapped) +
        (Number.isFinite(point.score) ? " · score " + point.score.toFixed(3) : "");
      tip.hidden = false;
      place();
    },
    hide: function () { tip.hidden = true; }
  };
})();

// The scatter's box/lasso selection, downloaded as a CSV made here in the browser (no server).
// Columns: path, split, given_label, label (blank, for the user to fill in: the file is then a
// labels file for --labels), cluster_<method> per method (blank for noise), score.
window.facecluster.selection = (function () {
  const button = document.getElementById("fc-download");
  const count = document.getElementById("fc-selected");
  const spec = document.getElementById("fc-selection-columns");
  const cell = window.facecluster.csvCell;  // csv_cell.js: quoted, and never a spreadsheet formula
  let indices = [];

  function points() {
    return Bokeh.documents[0].get_model_by_name("points").data;
  }

  function csv() {
    const columns = JSON.parse(spec.textContent);
    const d = points();
    const header = ["path", "split", "given_label", "label"].concat(columns.methods.map(m => "cluster_" + m.name), ["score"]);
    const lines = [header.map(cell).join(",")];
    for (const i of [...indices].sort((a, b) => a - b)) {
      const clusters = columns.methods.map(m => (d[m.column][i] === "noise" ? "" : d[m.column][i]));
      const score = Number.isFinite(d.score[i]) ? d.score[i].toFixed(6) : "";
      const given = d.label[i] === "unlabelled" ? "" : d.label[i];  // labels are real or fake only
      lines.push([d.path[i], d.split[i], given, ""].concat(clusters, [score]).map(cell).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }

  function download() {
    if (!indices.length) return;
    const url = URL.createObjectURL(new Blob([csv()], {type: "text/csv;charset=utf-8"}));
    const link = document.createElement("a");
    link.href = url;
    link.download = "facecluster-selection.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);  // after the download has started
  }

  if (button) button.addEventListener("click", download);
  return {
    changed: function (selected) {
      indices = Array.from(selected);
      if (count) count.textContent = indices.length + " point" + (indices.length === 1 ? "" : "s") + " selected";
      if (button) button.disabled = indices.length === 0;
    },
    csv: csv
  };
})();
