/* Drop-offs: a sender's code or QR opens a door, and the door read closed records the parcel;
   a courier collects their carrier's drop-offs. Built on kiosk.js (window.Kiosk). */
(function () {
  "use strict";

  var K = window.Kiosk;
  var $ = K.$;
  // Drop-off codes are made by central, always 10 digits (locker_node.domain.dropoffs).
  var DIGITS = 10;
  var DOOR_POLL_MS = 1000;
  // While the door stands open someone is at it: the kiosk does not go home for inactivity,
  // for this long at most (a door left open is the door monitor's alert, not the screen's).
  var OPEN_DOOR_KEEPALIVE_MS = 5 * 60 * 1000;

  var local = { code: "", dropoff: null, watch: null };

  K.courierScreens.push("collect");
  K.announced.push("dropoff-door", "dropoff-done");

  // The sender's keypad and QR entry

  function renderCode() {
    var shown = local.code;
    for (var i = shown.length; i < DIGITS; i++) { shown += "_"; }
    $("dropoff-display").textContent = shown;
  }

  function lock(seconds) {
    // The pickup keypad's lockout: one count of wrong codes for both kinds.
    K.showLocked(seconds, "dropoff", "dropoff-qr");
  }

  K.enter.dropoff = function () {
    local.code = "";
    renderCode();
    K.clearText($("dropoff-message"));
    K.api("GET", "/api/status").then(function (answer) {
      if (answer.status === 200 && answer.data.keypad.locked) { lock(answer.data.keypad.retry_after_s); }
    });
  };

  K.enter["dropoff-qr"] = function () {
    $("dropoff-qr-input").value = "";
    K.clearText($("dropoff-qr-message"));
    $("dropoff-qr-input").focus();
  };

  K.enter.collect = function () { loadCollect(); };

  var START_ERRORS = {
    already_dropped_off: "dropoff.already",
    dropoff_cancelled: "dropoff.cancelled",
    dropoff_expired: "dropoff.expired",
    no_capacity: "dropoff.no_capacity",
    bank_in_maintenance: "dropoff.maintenance"
  };

  function handleStart(answer, message, byQr) {
    var data = answer.data || {};
    if (answer.status === 200) {
      showDoor(data);
    } else if (answer.status === 429 || (answer.status === 401 && data.retry_after_s)) {
      lock(data.retry_after_s);
    } else if (answer.status === 401 && byQr) {
      K.setText(message, "dropoff.qr_invalid");
    } else if (answer.status === 401) {
      K.setText(message, "dropoff.wrong", { attempts_left: data.attempts_left });
    } else if (answer.status === 503 && data.error === "door_fault") {
      K.showProblem("problem.dropoff", data.compartment, false);
    } else if (START_ERRORS[data.error]) {
      K.setText(message, START_ERRORS[data.error]);
    } else if (answer.status === 422 && byQr) {
      K.setText(message, "dropoff.qr_invalid");
    } else if (answer.status === 422) {
      K.setText(message, "dropoff.short", { digits: DIGITS });
    } else {
      K.setText(message, "common.error");
    }
  }

  K.bindKeypad("dropoff", function (key) {
    local.code = K.edit(local.code, key, DIGITS);
    renderCode();
    K.clearText($("dropoff-message"));
  });

  $("dropoff-submit").addEventListener("click", function () {
    if (local.code.length !== DIGITS) {
      K.setText($("dropoff-message"), "dropoff.short", { digits: DIGITS });
      return;
    }
    var code = local.code;
    local.code = "";
    renderCode();
    K.api("POST", "/api/dropoff", { code: code }).then(function (answer) {
      handleStart(answer, $("dropoff-message"), false);
    });
  });

  // Digits typed on a keyboard work as on the pickup screen.
  document.addEventListener("keydown", function (event) {
    if (K.state.screen !== "dropoff") { return; }
    if (/^[0-9]$/.test(event.key)) {
      local.code = K.edit(local.code, event.key, DIGITS);
    } else if (event.key === "Backspace") {
      local.code = K.edit(local.code, "back", DIGITS);
    } else if (event.key === "Enter") {
      // Enter on a focused button presses that button (a key of the keypad, Back), not Open.
      if (event.target.closest && event.target.closest("button")) { return; }
      $("dropoff-submit").click();
      return;
    } else {
      return;
    }
    K.clearText($("dropoff-message"));
    renderCode();
  });

  $("dropoff-qr-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var token = $("dropoff-qr-input").value.trim();
    $("dropoff-qr-input").value = "";
    if (!token) { return; }
    K.api("POST", "/api/dropoff/qr", { token: token }).then(function (answer) {
      handleStart(answer, $("dropoff-qr-message"), true);
    });
  });

  // The open door: put the parcel in and close it

  function showDoor(view) {
    var label = view.compartment;
    local.dropoff = { id: view.dropoff_id, label: label, removing: false, door: "open", since: Date.now() };
    $("dropoff-door-label").textContent = label;
    K.setText($("dropoff-door-title"), "dropoff.door_title", { label: label });
    K.setText($("dropoff-door-hint"), "dropoff.door_hint", { label: label });
    K.clearText($("dropoff-door-message"));
    K.renderDoorMap(label, "dropoff-door-map");
    K.show("dropoff-door");
    watch();
  }

  function stopWatch() {
    clearTimeout(local.watch);
    local.watch = null;
  }

  // The door is read every second (without K.api(): no busy overlay, and a read is not someone
  // touching the screen). When it goes from open to closed, the drop-off is confirmed (or, after
  // a cancel, ended) with no touch needed; a refusal waits for the door to open and close again.
  function watch() {
    stopWatch();
    var dropoff = local.dropoff;
    function current() { return local.dropoff === dropoff && K.state.screen === "dropoff-door"; }
    function check() {
      fetch("/api/status?door=" + encodeURIComponent(dropoff.label), {
        headers: { "Accept": "application/json" }, credentials: "same-origin"
      }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(null, function () { return null; }).then(function (data) {
        if (!current()) { return; }
        var door = data && data.door ? data.door.state : null;
        if (door === "open" && Date.now() - dropoff.since < OPEN_DOOR_KEEPALIVE_MS) {
          K.state.lastActivity = Date.now();
        }
        var shut = door === "closed" && dropoff.door !== "closed";
        if (door) { dropoff.door = door; }
        if (shut) {
          if (dropoff.removing) { cancel(true); } else { confirm(true); }
          return;
        }
        local.watch = setTimeout(check, DOOR_POLL_MS);
      });
    }
    local.watch = setTimeout(check, DOOR_POLL_MS);
  }

  function dropoffCall(dropoff, action) {
    return K.api("POST", "/api/dropoff/" + encodeURIComponent(dropoff.id) + "/" + action);
  }

  function finished(titleKey, hintKey, label) {
    stopWatch();
    local.dropoff = null;
    K.setText($("dropoff-done-title"), titleKey, { label: label });
    K.setText($("dropoff-done-hint"), hintKey);
    K.show("dropoff-done");
  }

  function confirm(auto) {
    var dropoff = local.dropoff;
    if (!dropoff) { return; }
    stopWatch();
    dropoffCall(dropoff, "confirm").then(function (answer) {
      if (local.dropoff !== dropoff) { return; }
      var message = $("dropoff-door-message");
      var error = answer.data && answer.data.error;
      if (answer.status === 200) {
        finished("dropoff.done_title", "dropoff.done_hint", answer.data.compartment);
        return;
      }
      if (error === "door_open") {
        if (!auto) { K.setText(message, "dropoff.close_first", { label: dropoff.label }); }
      } else if (error === "door_not_opened") {
        K.setText(message, "dropoff.never_opened");
      } else {
        K.setText(message, "common.error");
      }
      if (error === "dropoff_closed" || error === "unknown_dropoff") { return; }
      watch();
    });
  }

  function cancel(auto) {
    var dropoff = local.dropoff;
    if (!dropoff) { return; }
    stopWatch();
    dropoffCall(dropoff, "cancel").then(function (answer) {
      if (local.dropoff !== dropoff) { return; }
      var message = $("dropoff-door-message");
      var error = answer.data && answer.data.error;
      if (answer.status === 200 && answer.data.status === "removing") {
        // The door is open (again): the parcel comes out, and the closed door ends it.
        dropoff.removing = true;
        dropoff.door = "open";
        K.setText(message, "dropoff.take_out", { label: dropoff.label });
      } else if (answer.status === 200) {
        finished("dropoff.cancelled_title", "dropoff.cancelled_hint", dropoff.label);
        return;
      } else if (error === "door_open") {
        if (!auto) { K.setText(message, "dropoff.take_out", { label: dropoff.label }); }
      } else if (answer.status === 503) {
        K.setText(message, "problem.dropoff", { label: dropoff.label });
      } else {
        K.setText(message, "common.error");
      }
      if (error === "dropoff_closed" || error === "unknown_dropoff") { return; }
      watch();
    });
  }

  $("dropoff-confirm").addEventListener("click", function () { confirm(false); });
  $("dropoff-cancel").addEventListener("click", function () { cancel(false); });

  // The courier's list of drop-offs to collect

  function loadCollect() {
    var list = $("collect-list");
    list.textContent = "";
    K.clearText($("collect-message"));
    $("collect-empty").hidden = true;
    K.api("GET", "/api/courier/dropoffs").then(function (answer) {
      if (K.courierExpired(answer, $("collect-message"))) { return; }
      if (answer.status !== 200) { K.setText($("collect-message"), "common.error"); return; }
      var items = answer.data.dropoffs;
      $("collect-empty").hidden = items.length > 0;
      items.forEach(function (item) { list.appendChild(collectRow(item)); });
    });
  }

  function collectRow(item) {
    var row = document.createElement("li");
    row.dataset.parcel = item.parcel_id;
    var where = document.createElement("span");
    where.className = "compartment";
    where.id = "collect-door-" + item.parcel_id;
    where.textContent = item.compartment;
    var what = document.createElement("span");
    what.id = "collect-tracking-" + item.parcel_id;
    what.textContent = item.tracking_number;
    var note = document.createElement("span");
    note.className = "note";
    note.setAttribute("aria-live", "polite");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "big";
    // "Open" alone says nothing of which parcel: the row's door and tracking number describe it.
    button.setAttribute("aria-describedby", where.id + " " + what.id);
    K.setText(button, "collect.open");
    button.addEventListener("click", function () {
      var opened = button.dataset.step === "opened";
      var action = opened ? "confirm" : "open";
      K.api("POST", "/api/courier/dropoffs/" + encodeURIComponent(item.parcel_id) + "/" + action).then(function (answer) {
        if (K.courierExpired(answer, $("collect-message"))) { return; }
        if (answer.status === 200 && !opened) {
          button.dataset.step = "opened";
          K.setText(button, "collect.collected");
          K.setText(note, "collect.opened", { label: item.compartment });
        } else if (answer.status === 200) {
          button.remove();
          K.setText(note, "collect.done");
        } else if (answer.data.error === "door_open") {
          K.setText(note, "deposit.close_first", { label: item.compartment });
        } else if (answer.status === 503) {
          K.setText(note, "collect.door_fault", { label: item.compartment });
        } else {
          K.setText(note, "common.error");
        }
      });
    });
    row.appendChild(where);
    row.appendChild(what);
    row.appendChild(note);
    row.appendChild(button);
    return row;
  }
})();
