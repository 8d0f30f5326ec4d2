/* Maintenance: while central has the bank in maintenance the kiosk's home is a screen that says
   so, with the reason, the expected end in the bank's time and the nearest lockers; picking up
   (by code or QR) and the courier's login stay on it, since parcels inside still go out. */
(function () {
  "use strict";

  var K = window.Kiosk;
  var $ = K.$;
  // How often the home screen asks the node whether maintenance began or ended. The answer is
  // the node's own store (no request reaches central), so asking often costs nothing.
  var POLL_MS = 3000;
  var NEARBY_SHOWN = 3;
  var shown = null;  // what the screen was last drawn from, to redraw only on a change

  function part(className, text) {
    var span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    return span;
  }

  // The expected end in the bank's time zone and the kiosk's language; ISO if the browser
  // cannot (an unknown zone).
  function when(iso, zone) {
    var at = new Date(iso);
    try {
      return new Intl.DateTimeFormat(K.state.lang, {
        weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit",
        timeZone: zone || "UTC"
      }).format(at);
    } catch (error) {
      return iso;
    }
  }

  function distance(km) {
    return Number(km).toLocaleString(K.state.lang, { maximumFractionDigits: 1 });
  }

  function nearbyRow(bank) {
    var row = document.createElement("li");
    row.dataset.bank = bank.bank_id;
    var away = part("bank-away", "");
    K.setText(away, "overflow.away", { km: distance(bank.distance_km) });
    row.appendChild(part("bank-name", bank.name));
    row.appendChild(part("bank-address", bank.address));
    row.appendChild(away);
    return row;
  }

  function render() {
    var maintenance = K.state.maintenance;
    if (!maintenance) { return; }
    K.setText($("maintenance-reason"), "maintenance.reason", { reason: maintenance.reason });
    if (maintenance.until) {
      K.setText($("maintenance-until"), "maintenance.until", {
        when: when(maintenance.until, K.state.bankTimezone)
      });
    } else {
      K.setText($("maintenance-until"), "maintenance.no_until");
    }
    var list = $("maintenance-nearby");
    list.textContent = "";
    var nearby = (maintenance.nearby || []).slice(0, NEARBY_SHOWN);
    nearby.forEach(function (bank) { list.appendChild(nearbyRow(bank)); });
    $("maintenance-elsewhere").hidden = nearby.length === 0;
  }

  function apply(status) {
    var maintenance = status.maintenance || null;
    K.state.maintenance = maintenance;
    K.state.bankTimezone = status.settings ? status.settings.timezone : null;
    var drawn = JSON.stringify([maintenance, K.state.bankTimezone]);
    var changed = drawn !== shown;
    shown = drawn;
    var home = K.homeScreen();
    if (K.state.screen === "home" || K.state.screen === "maintenance") {
      if (K.state.screen !== home) {
        K.show(home);  // entering it draws it
      } else if (changed) {
        render();
      }
    }
  }

  // Polled without K.api(): no busy overlay, and a poll is not somebody touching the screen.
  function poll() {
    fetch("/api/status", { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(null, function () { return null; })
      .then(function (status) {
        if (status) { apply(status); }
        setTimeout(poll, POLL_MS);
      });
  }

  K.enter.maintenance = render;
  // The end's date is worded in the kiosk's language: redrawn when the language changes.
  $("lang-toggle").addEventListener("click", function () {
    if (K.state.screen === "maintenance") { render(); }
  });
  poll();
})();
