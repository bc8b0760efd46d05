// Tierless dashboard: refreshes the page's content in place every few seconds. Our own code,
// no library. The server renders everything (SVG charts included); this script only fetches the
// fresh HTML of <main> with the session cookie, keeps the chosen trend series and range in the address, and
// says when the connection is lost. Without it the page still shows, it just does not refresh.
(function () {
  "use strict";
  var main = document.getElementById("content");
  var status = document.getElementById("refresh-status");
  var period = Number(document.body.getAttribute("data-refresh-ms")) || 5000;
  var busy = false;
  var timer = null;

  function query() {
    var params = new URLSearchParams(window.location.search);
    params.delete("token");
    var text = params.toString();
    return text ? "?" + text : "";
  }

  function say(ok, text) {
    if (!status) return;
    status.className = "status " + (ok ? "ok" : "stale");
    status.textContent = text;
  }

  function schedule(ms) {
    if (timer !== null) window.clearTimeout(timer);
    timer = window.setTimeout(refresh, ms === undefined ? period : ms);
  }

  function bind() {
    // the trend's pickers (series, range): the choice goes into the address, then a refresh
    var selects = document.querySelectorAll("form.trend-pick select");
    Array.prototype.forEach.call(selects, function (select) {
      select.addEventListener("change", function () {
        var params = new URLSearchParams(window.location.search);
        params.delete("token");
        params.set(select.name, select.value);
        window.history.replaceState(null, "", "?" + params.toString());
        select.blur();
        schedule(0);
      });
    });
  }

  function refresh() {
    var active = document.activeElement;
    if (busy || document.hidden || (active && active.tagName === "SELECT")) {
      schedule();
      return;
    }
    busy = true;
    fetch("/dashboard/fragment" + query(), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { accept: "text/html" },
    })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        main.innerHTML = html;
        bind();
        say(true, "live");
      })
      .catch(function () {
        say(false, "connection lost, retrying");
      })
      .then(function () {
        busy = false;
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) schedule(0);
  });
  bind();
  schedule();
})();
