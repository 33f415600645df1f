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
        (point.cluster === "noise" ? "" : " → " + point.mapped);
      tip.hidden = false;
      place();
    },
    hide: function () { tip.hidden = true; }
  };
})();
