/* Kiosk screens: one page, one screen at a time, everything through the node's local API. */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("kiosk-config").textContent);
  var strings = JSON.parse(document.getElementById("kiosk-strings").textContent);
  var COURIER_SCREENS = ["courier-scan", "deposit", "deposit-done", "returns"];
  // The open-door screen goes home once its door reads closed, and after this long at most,
  // so that the next person never reads someone else's door number.
  var DOOR_SCREEN_MAX_MS = 20000;
  var DOOR_POLL_MS = 1000;

  var state = {
    lang: config.language,
    screen: "home",
    lastActivity: Date.now(),
    pickupCode: "",
    loginPin: "",
    carrier: null,
    deposit: null,
    pendingTracking: null,
    depositTracking: null,
    lockedUntil: 0,
    afterLock: "pickup",
    lastPickup: null,
    a11y: false,
    layout: null,
    mapDoor: null,
    // Central's maintenance of this bank ({reason, until, nearby}) and the bank's time zone, as
    // maintenance.js last read them from /api/status; null when the bank is open.
    maintenance: null,
    bankTimezone: null
  };
  // Screens whose heading is news (a door opened, a door failed, a lockout): read out at once.
  var ANNOUNCED = ["door-open", "door-problem", "deposit", "deposit-done", "locked"];

  function $(id) { return document.getElementById(id); }

  // Language

  function t(key, vars) {
    var table = strings[state.lang] || strings.en;
    var text = table[key] !== undefined ? table[key] : (strings.en[key] || key);
    Object.keys(vars || {}).forEach(function (name) {
      text = text.split("{" + name + "}").join(String(vars[name]));
    });
    return text;
  }

  function setText(element, key, vars) {
    element.dataset.i18n = key;
    element.dataset.i18nVars = JSON.stringify(vars || {});
    element.textContent = t(key, vars);
  }

  function clearText(element) {
    delete element.dataset.i18n;
    delete element.dataset.i18nVars;
    element.textContent = "";
  }

  function applyLanguage() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-i18n]").forEach(function (element) {
      var vars = element.dataset.i18nVars ? JSON.parse(element.dataset.i18nVars) : {};
      element.textContent = t(element.dataset.i18n, vars);
    });
    document.querySelectorAll("[data-i18n-label]").forEach(function (element) {
      element.setAttribute("aria-label", t(element.dataset.i18nLabel));
    });
    var other = state.lang === "en" ? "es" : "en";
    $("lang-toggle").lang = other;
    if (state.mapDoor) { renderDoorMap(state.mapDoor.labels, state.mapDoor.mapId); }
  }

  // Accessibility mode: large text, high contrast, and on a portrait display every control in
  // the lower part of the screen, within reach from a wheelchair. It stays on from screen to
  // screen until the person switches it off or walks away.

  function setA11y(on, quietly) {
    state.a11y = on;
    document.documentElement.classList.toggle("a11y", on);
    $("a11y-toggle").setAttribute("aria-pressed", on ? "true" : "false");
    if (!quietly) { announce(t(on ? "a11y.on" : "a11y.off")); }
  }

  function announce(text) {
    var region = $("announce");
    region.textContent = "";
    // A fresh text node after a beat, so that a repeated message is read again.
    setTimeout(function () { region.textContent = text; }, 50);
  }

  function setLanguage(lang) {
    state.lang = lang;
    applyLanguage();
  }

  // Screens

  function show(name) {
    document.querySelectorAll(".screen").forEach(function (screen) {
      screen.hidden = screen.dataset.name !== name;
    });
    if (name !== "door-open") { stopDoorWatch(); }
    // A map is kept (and redrawn in the other language) only while its screen shows.
    var drawn = state.mapDoor && $(state.mapDoor.mapId || "door-map");
    if (drawn && !drawn.closest("#screen-" + name)) { state.mapDoor = null; }
    state.screen = name;
    document.body.dataset.screen = name;
    // Focus starts at the new screen's heading, so a screen reader reads where the person is
    // and Tab goes on from the top of this screen, not from a button that has disappeared.
    var heading = document.querySelector("#screen-" + name + " h1");
    if (heading) { heading.focus({ preventScroll: true }); }
    if (heading && ANNOUNCED.indexOf(name) >= 0) { announce(heading.textContent); }
    var enter = ENTER[name];
    if (enter) { enter(); }
  }

  // Where "home" is: the maintenance screen while the bank is in maintenance.
  function homeScreen() { return state.maintenance ? "maintenance" : "home"; }

  function goHome() {
    if (COURIER_SCREENS.indexOf(state.screen) >= 0) {
      api("POST", "/api/courier/logout");
    }
    state.deposit = null;
    state.pendingTracking = null;
    setLanguage(config.language);
    show(homeScreen());
  }

  var ENTER = {
    pickup: function () {
      state.pickupCode = "";
      renderCode();
      clearText($("pickup-message"));
      api("GET", "/api/status").then(function (answer) {
        if (answer.status === 200 && answer.data.keypad.locked) {
          showLocked(answer.data.keypad.retry_after_s);
        }
      });
    },
    qr: function () {
      $("qr-input").value = "";
      clearText($("qr-message"));
      $("qr-input").focus();
    },
    "courier-login": function () {
      state.loginPin = "";
      state.carrier = null;
      renderPin();
      clearText($("login-message"));
      loadCarriers();
    },
    "courier-scan": function () {
      $("scan-input").value = "";
      $("size-choice").hidden = true;
      state.pendingTracking = null;
      clearText($("scan-message"));
      $("scan-input").focus();
    },
    returns: function () { loadReturns(); }
  };

  // Inactivity: every screen goes home, and a courier is logged out, after idleTimeoutS.

  function touched() { state.lastActivity = Date.now(); }
  ["pointerdown", "keydown", "input"].forEach(function (type) {
    document.addEventListener(type, touched, true);
  });
  setInterval(function () {
    if (state.screen !== homeScreen() && Date.now() - state.lastActivity > config.idleTimeoutS * 1000) {
      goHome();
      // Whoever walks up next may not need large text or the controls low down, and would
      // have to find the switch to get the usual screen back: the mode ends with the visit.
      setA11y(false, true);
    }
    if (state.screen === "locked") { renderCountdown(); }
  }, 250);

  // The API

  var busyTimer = null;

  function api(method, path, body) {
    var options = { method: method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    clearTimeout(busyTimer);
    busyTimer = setTimeout(function () { $("busy").hidden = false; }, 300);
    return fetch(path, options).then(function (response) {
      if (response.status === 204) { return { status: 204, data: {} }; }
      return response.json().then(function (data) {
        return { status: response.status, data: data };
      }, function () { return { status: response.status, data: { error: "bad_answer" } }; });
    }, function () {
      return { status: 0, data: { error: "network" } };
    }).then(function (answer) {
      clearTimeout(busyTimer);
      $("busy").hidden = true;
      touched();
      return answer;
    });
  }

  function courierExpired(answer, messageElement) {
    if (answer.status === 401 && (answer.data.error === "session_expired" || answer.data.error === "not_logged_in")) {
      show("courier-login");
      setText($("login-message"), "session.expired");
      return true;
    }
    if (answer.status >= 500 && answer.data.error !== "door_fault") {
      setText(messageElement, "common.error");
      return true;
    }
    return false;
  }

  // Keypads

  function bindKeypad(name, onKey) {
    document.querySelector('[data-keypad="' + name + '"]').addEventListener("click", function (event) {
      var key = event.target.closest("[data-key]");
      if (key) { onKey(key.dataset.key); }
    });
  }

  function edit(value, key, max) {
    if (key === "clear") { return ""; }
    if (key === "back") { return value.slice(0, -1); }
    return value.length < max ? value + key : value;
  }

  function renderCode() {
    var shown = state.pickupCode;
    for (var i = shown.length; i < config.codeDigits; i++) { shown += "_"; }
    $("pickup-display").textContent = shown;
  }

  function renderPin() {
    $("login-display").textContent = state.loginPin.replace(/./g, "•");
  }

  // Recipients

  // `all`: every door a code opened (a recipient's parcels may share one code); `failed`: the
  // doors of that code that did not open (the code still works for them).
  function showDoorOpen(label, all, failed) {
    var labels = all && all.length ? all : [label];
    var shown = labels.join(", ");
    $("door-open-label").textContent = shown;
    setText($("door-open-title"), labels.length > 1 ? "door.title_many" : "door.title", { label: shown });
    var lead = document.querySelector("#screen-door-open .lead");
    if (failed && failed.length) {
      setText(lead, "door.partly", { label: failed.join(", ") });
    } else {
      setText(lead, "door.hint");
    }
    renderDoorMap(labels);
    show("door-open");
    watchDoor(label);
  }

  // The door map: the bank's columns from /api/layout, drawn as a grid, the open door marked
  // by colour, a stripe pattern and the word OPEN. Fetched once; without it the map stays hidden.

  function loadLayout() {
    return fetch("/api/layout", { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(null, function () { return null; })
      .then(function (data) {
        if (data && data.columns && data.columns.length) { state.layout = data; }
        if (state.mapDoor) { renderDoorMap(state.mapDoor.labels, state.mapDoor.mapId); }
      });
  }

  // `labels`: the open door, or every door a code opened; `mapId`: the map element to draw in
  // (the recipient's door screen by default, or another screen's, e.g. the courier's).
  function renderDoorMap(labels, mapId) {
    var open = [].concat(labels || []);
    var map = $(mapId || "door-map");
    state.mapDoor = { labels: open, mapId: mapId };
    map.textContent = "";
    map.hidden = !state.layout;
    if (!state.layout) { loadLayout(); return; }
    var columns = state.layout.columns;
    map.style.setProperty("--columns", String(columns.length));
    columns.forEach(function (column) {
      var drawn = document.createElement("div");
      drawn.className = "map-column";
      column.compartments.forEach(function (door) {
        drawn.appendChild(mapDoor(door, open.indexOf(door.label) >= 0));
      });
      map.appendChild(drawn);
    });
  }

  function mapDoor(door, open) {
    var cell = document.createElement("div");
    cell.className = open ? "map-door open" : "map-door";
    cell.style.flexGrow = String(door.height || 1);
    cell.dataset.door = door.label;
    var name = document.createElement("span");
    name.className = "map-name";
    name.textContent = door.label;
    cell.appendChild(name);
    if (door.accessible) {
      // The wheelchair symbol, with its words as the tooltip; the open door says it aloud.
      var mark = document.createElement("span");
      mark.className = "map-accessible";
      mark.textContent = "\u267F";
      mark.title = t("map.accessible");
      cell.appendChild(mark);
    }
    if (open) {
      cell.setAttribute("role", "img");
      cell.setAttribute("aria-label", t(door.accessible ? "map.door_open_accessible" : "map.door_open", { label: door.label }));
      var badge = document.createElement("span");
      badge.className = "map-badge";
      badge.textContent = t("map.open");
      cell.appendChild(badge);
    } else {
      cell.setAttribute("aria-hidden", "true");
    }
    return cell;
  }

  var doorWatch = null;

  function stopDoorWatch() {
    if (!doorWatch) { return; }
    clearTimeout(doorWatch.poll);
    clearTimeout(doorWatch.deadline);
    doorWatch = null;
  }

  // Polled without api(): no busy overlay, and a poll is not somebody touching the screen.
  function watchDoor(label) {
    stopDoorWatch();
    var watch = { poll: null, deadline: null };
    doorWatch = watch;
    function current() { return doorWatch === watch && state.screen === "door-open"; }
    function check() {
      fetch("/api/status?door=" + encodeURIComponent(label), {
        headers: { "Accept": "application/json" }, credentials: "same-origin"
      }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(null, function () { return null; }).then(function (data) {
        if (!current()) { return; }
        if (data && data.door && data.door.state === "closed") { goHome(); return; }
        watch.poll = setTimeout(check, DOOR_POLL_MS);
      });
    }
    watch.poll = setTimeout(check, DOOR_POLL_MS);
    watch.deadline = setTimeout(function () { if (current()) { goHome(); } }, DOOR_SCREEN_MAX_MS);
  }

  function showProblem(key, label, retry) {
    setText($("door-problem-detail"), key, { label: label });
    $("door-problem-retry").hidden = !retry;
    show("door-problem");
  }

  // `qrScreen`: where the QR way past the lockout goes (the pickup's, or a drop-off's).
  function showLocked(seconds, after, qrScreen) {
    state.lockedUntil = Date.now() + seconds * 1000;
    state.afterLock = after || "pickup";
    // A QR code is the recipient's way past a keypad lockout; a courier has none.
    var courier = state.afterLock === "courier-login";
    setText($("locked-hint"), courier ? "locked.courier_hint" : "locked.hint");
    $("locked-qr").hidden = courier;
    $("locked-qr").dataset.goto = qrScreen || "qr";
    $("locked-home").classList.toggle("primary", courier);
    $("locked-home").classList.toggle("quiet", !courier);
    show("locked");
    renderCountdown();
  }

  function renderCountdown() {
    var left = Math.max(0, Math.ceil((state.lockedUntil - Date.now()) / 1000));
    var minutes = Math.floor(left / 60);
    var seconds = left % 60;
    $("locked-countdown").textContent = minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
    if (left === 0) { show(state.afterLock); }
  }

  function handlePickup(answer, messageElement, invalidKey) {
    if (answer.status === 200) {
      showDoorOpen(answer.data.compartment, answer.data.compartments, answer.data.failed);
    } else if (answer.status === 429) {
      showLocked(answer.data.retry_after_s);
    } else if (answer.status === 401 && answer.data.retry_after_s) {
      showLocked(answer.data.retry_after_s);
    } else if (answer.status === 401) {
      setText(messageElement, invalidKey, { attempts_left: answer.data.attempts_left });
    } else if (answer.status === 503) {
      showProblem("problem.pickup", answer.data.compartment, true);
    } else if (answer.data && answer.data.error === "already_collected") {
      setText(messageElement, "pickup.already_collected");
    } else if (answer.status === 422) {
      setText(messageElement, invalidKey === "qr.invalid" ? "qr.invalid" : "pickup.short", { digits: config.codeDigits });
    } else {
      setText(messageElement, "common.error");
    }
  }

  bindKeypad("pickup", function (key) {
    state.pickupCode = edit(state.pickupCode, key, config.codeDigits);
    renderCode();
    clearText($("pickup-message"));
  });

  $("pickup-submit").addEventListener("click", function () {
    if (state.pickupCode.length !== config.codeDigits) {
      setText($("pickup-message"), "pickup.short", { digits: config.codeDigits });
      return;
    }
    var code = state.pickupCode;
    state.pickupCode = "";
    renderCode();
    state.lastPickup = { kind: "code", value: code };
    api("POST", "/api/pickup", { code: code }).then(function (answer) {
      handlePickup(answer, $("pickup-message"), "pickup.wrong");
    });
  });

  $("qr-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var token = $("qr-input").value.trim();
    $("qr-input").value = "";
    if (!token) { return; }
    state.lastPickup = { kind: "qr", value: token };
    api("POST", "/api/pickup/qr", { token: token }).then(function (answer) {
      handlePickup(answer, $("qr-message"), "qr.invalid");
    });
  });

  $("door-problem-retry").addEventListener("click", function () {
    var last = state.lastPickup;
    if (!last) { show(homeScreen()); return; }
    var request = last.kind === "qr"
      ? api("POST", "/api/pickup/qr", { token: last.value })
      : api("POST", "/api/pickup", { code: last.value });
    request.then(function (answer) {
      if (answer.status !== 200) { state.lastPickup = null; }
      handlePickup(answer, $("door-problem-detail"), last.kind === "qr" ? "qr.invalid" : "pickup.wrong");
    });
  });

  // Couriers

  function loadCarriers() {
    var list = $("carrier-list");
    list.textContent = "";
    api("GET", "/api/courier/carriers").then(function (answer) {
      var carriers = answer.status === 200 ? answer.data.carriers : [];
      if (!carriers.length) { setText($("login-message"), "login.none"); }
      carriers.forEach(function (carrier) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "choice";
        button.dataset.carrier = carrier;
        button.setAttribute("role", "radio");
        button.setAttribute("aria-checked", "false");
        button.textContent = config.carrierNames[carrier] || carrier;
        list.appendChild(button);
      });
      if (carriers.length === 1) { selectCarrier(carriers[0]); }
    });
  }

  function selectCarrier(carrier) {
    state.carrier = carrier;
    document.querySelectorAll("#carrier-list [data-carrier]").forEach(function (button) {
      button.setAttribute("aria-checked", button.dataset.carrier === carrier ? "true" : "false");
      // Tab reaches the group once, at its chosen carrier; the arrows move within it.
      button.tabIndex = button.dataset.carrier === carrier ? 0 : -1;
    });
  }

  $("carrier-list").addEventListener("click", function (event) {
    var button = event.target.closest("[data-carrier]");
    if (button) { selectCarrier(button.dataset.carrier); }
  });

  // A radio group moves with the arrow keys: the next or previous carrier is chosen and focused.
  var ARROWS = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 };
  $("carrier-list").addEventListener("keydown", function (event) {
    var step = ARROWS[event.key];
    var buttons = Array.prototype.slice.call(document.querySelectorAll("#carrier-list [data-carrier]"));
    var at = buttons.indexOf(event.target.closest("[data-carrier]"));
    if (!step || at < 0) { return; }
    event.preventDefault();
    var next = buttons[(at + step + buttons.length) % buttons.length];
    selectCarrier(next.dataset.carrier);
    next.focus();
  });

  bindKeypad("login", function (key) {
    state.loginPin = edit(state.loginPin, key, 12);
    renderPin();
    clearText($("login-message"));
  });

  $("login-submit").addEventListener("click", function () {
    if (!state.carrier) { setText($("login-message"), "login.no_carrier"); return; }
    var pin = state.loginPin;
    state.loginPin = "";
    renderPin();
    api("POST", "/api/courier/login", { carrier: state.carrier, pin: pin }).then(function (answer) {
      if (answer.status === 200) {
        show("courier-scan");
      } else if (answer.status === 429 || (answer.status === 401 && answer.data.retry_after_s)) {
        showLocked(answer.data.retry_after_s, "courier-login");
      } else if (answer.status === 401) {
        setText($("login-message"), "login.wrong", { attempts_left: answer.data.attempts_left });
      } else if (answer.status === 422 && /courier code/.test(answer.data.detail || "")) {
        // The node's own reason, said in the kiosk's language.
        setText($("login-message"), "login.bad_code");
      } else if (answer.status < 500 && answer.data.detail) {
        clearText($("login-message"));
        $("login-message").textContent = answer.data.detail;
      } else {
        setText($("login-message"), "common.error");
      }
    });
  });

  function logout() {
    api("POST", "/api/courier/logout").then(function () { state.screen = "home"; goHome(); });
  }
  $("courier-logout").addEventListener("click", logout);
  $("done-logout").addEventListener("click", logout);

  $("scan-keyboard").addEventListener("click", function (event) {
    var key = event.target.closest("[data-char]");
    if (!key) { return; }
    var input = $("scan-input");
    input.value = key.dataset.char === "back" ? input.value.slice(0, -1) : (input.value + key.dataset.char).slice(0, 64);
    clearText($("scan-message"));
  });

  var SCAN_ERRORS = {
    no_reservation: "scan.no_reservation",
    no_capacity: "scan.no_capacity",
    no_accessible_compartment: "scan.no_accessible",
    already_deposited: "scan.already",
    reservation_cancelled: "scan.cancelled",
    reservation_expired: "scan.expired",
    bank_in_maintenance: "scan.maintenance"
  };

  function startDeposit(tracking, size) {
    var body = { tracking_number: tracking };
    if (size) { body.size = size; }
    api("POST", "/api/courier/deposit", body).then(function (answer) {
      var message = $("scan-message");
      if (courierExpired(answer, message)) { return; }
      if (answer.status === 200) {
        state.depositTracking = tracking;
        showDeposit(answer.data, "deposit");
      } else if (answer.data.error === "size_required") {
        state.pendingTracking = tracking;
        setText(message, "scan.size_required");
        $("size-choice").hidden = false;
      } else if (answer.status === 503) {
        showProblem("problem.deposit", answer.data.compartment, false);
      } else {
        setText(message, SCAN_ERRORS[answer.data.error] || "common.error");
        // No free door of its class: overflow.js offers a nearby locker.
        if (answer.data.error === "no_capacity" && window.Kiosk.offerOverflow) {
          window.Kiosk.offerOverflow(tracking, null, message);
        }
      }
    });
  }

  function submitScan() {
    var tracking = $("scan-input").value.trim();
    if (!tracking) { return; }
    startDeposit(tracking, null);
  }

  $("scan-form").addEventListener("submit", function (event) { event.preventDefault(); submitScan(); });
  $("scan-submit").addEventListener("click", submitScan);
  $("size-choice").addEventListener("click", function (event) {
    var button = event.target.closest("[data-size]");
    if (button && state.pendingTracking) { startDeposit(state.pendingTracking, button.dataset.size); }
  });
  $("go-returns").addEventListener("click", function () { show("returns"); });

  function showDeposit(view, variant) {
    state.deposit = view;
    var label = view.compartment;
    var moved = view.moved_from || [];
    $("deposit-label").textContent = label;
    clearText($("deposit-message"));
    var notice = $("deposit-notice");
    notice.hidden = true;
    if (variant === "toosmall") {
      setText($("deposit-title"), "toosmall.title", { label: label });
      setText(notice, "toosmall.hint", { label: label, from: moved[0] });
      notice.hidden = false;
    } else if (variant === "shared") {
      setText($("deposit-title"), "deposit.title", { label: label });
      setText(notice, moved.length ? "deposit.shared_moved" : "deposit.shared", { label: label, from: moved[0] });
      notice.hidden = false;
    } else {
      setText($("deposit-title"), "deposit.title", { label: label });
      if (moved.length) {
        setText(notice, "deposit.moved", { label: label, from: moved[moved.length - 1] });
        notice.hidden = false;
      }
    }
    document.body.dataset.depositVariant = variant;
    renderSharedDoors(view.shared_doors || []);
    renderDoorMap(label, "deposit-map");
    show("deposit");
  }

  // Doors holding a parcel for the same recipient: this one may go in with it (one pickup code
  // opens both). One button per door; the answer opens that door instead.
  function renderSharedDoors(doors) {
    var old = $("deposit-shared");
    if (old) { old.remove(); }
    if (!doors.length) { return; }
    var box = document.createElement("div");
    box.id = "deposit-shared";
    var hint = document.createElement("p");
    hint.className = "notice";
    setText(hint, "deposit.share_hint", { label: doors.join(", ") });
    var buttons = document.createElement("div");
    buttons.className = "row";
    doors.forEach(function (door) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "big";
      button.dataset.door = door;
      setText(button, "deposit.share", { label: door });
      button.addEventListener("click", function () { shareDoor(door); });
      buttons.appendChild(button);
    });
    box.appendChild(hint);
    box.appendChild(buttons);
    $("deposit-message").before(box);
  }

  function shareDoor(door) {
    var body = { tracking_number: state.depositTracking, compartment: door };
    api("POST", "/api/courier/deposit", body).then(function (answer) {
      var message = $("deposit-message");
      if (courierExpired(answer, message)) { return; }
      if (answer.status === 200) {
        showDeposit(answer.data, "shared");
      } else if (answer.status === 503) {
        // That door did not open, and the deposit ended: the parcel is scanned again.
        show("courier-scan");
        setText($("scan-message"), "deposit.share_failed", { label: door });
      } else {
        setText(message, "common.error");
      }
    });
  }

  function depositCall(action) {
    var deposit = state.deposit;
    return api("POST", "/api/courier/deposit/" + encodeURIComponent(deposit.deposit_id) + "/" + action);
  }

  $("deposit-confirm").addEventListener("click", function () {
    depositCall("confirm").then(function (answer) {
      var message = $("deposit-message");
      if (courierExpired(answer, message)) { return; }
      if (answer.status === 200) {
        setText($("done-title"), "done.title", { label: answer.data.compartment });
        show("deposit-done");
      } else if (answer.data.error === "door_open") {
        setText(message, "deposit.close_first", { label: state.deposit.compartment });
      } else if (answer.data.error === "door_not_opened") {
        setText(message, "deposit.never_opened");
      } else {
        setText(message, "common.error");
      }
    });
  });

  $("deposit-too-small").addEventListener("click", function () {
    depositCall("too-small").then(function (answer) {
      var message = $("deposit-message");
      if (courierExpired(answer, message)) { return; }
      if (answer.status === 200) {
        showDeposit(answer.data, "toosmall");
      } else if (answer.data.error === "no_larger_compartment") {
        setText(message, "deposit.no_larger");
        if (window.Kiosk.offerOverflow) {
          window.Kiosk.offerOverflow(state.depositTracking, state.deposit.size, message);
        }
      } else if (answer.status === 503) {
        showProblem("problem.deposit", answer.data.compartment, false);
      } else {
        setText(message, "common.error");
      }
    });
  });

  $("deposit-door-problem").addEventListener("click", function () {
    depositCall("door-problem").then(function (answer) {
      var message = $("deposit-message");
      if (courierExpired(answer, message)) { return; }
      if (answer.status === 200) {
        showDeposit(answer.data, "moved");
      } else if (answer.status === 503) {
        showProblem("problem.deposit", answer.data.compartment, false);
      } else {
        setText(message, "common.error");
      }
    });
  });

  $("deposit-cancel").addEventListener("click", function () {
    depositCall("cancel").then(function (answer) {
      var message = $("deposit-message");
      if (courierExpired(answer, message)) { return; }
      if (answer.status === 200 && answer.data.status === "removing") {
        // The door is open again: the parcel comes out, then Cancel once more with it shut.
        setText(message, "deposit.take_out", { label: answer.data.compartment });
      } else if (answer.status === 200) {
        show("courier-scan");
      } else if (answer.data.error === "door_open") {
        setText(message, "deposit.close_first", { label: state.deposit.compartment });
      } else if (answer.status === 503) {
        showProblem("problem.deposit", answer.data.compartment, false);
      } else {
        setText(message, "common.error");
      }
    });
  });

  function loadReturns() {
    var list = $("returns-list");
    list.textContent = "";
    clearText($("returns-message"));
    $("returns-empty").hidden = true;
    api("GET", "/api/courier/returns").then(function (answer) {
      if (courierExpired(answer, $("returns-message"))) { return; }
      if (answer.status !== 200) { setText($("returns-message"), "common.error"); return; }
      var items = answer.data.returns;
      $("returns-empty").hidden = items.length > 0;
      items.forEach(function (item) { list.appendChild(returnRow(item)); });
    });
  }

  function returnRow(item) {
    var row = document.createElement("li");
    row.dataset.parcel = item.parcel_id;
    var where = document.createElement("span");
    where.className = "compartment";
    where.textContent = item.compartment;
    var what = document.createElement("span");
    what.textContent = item.tracking_number;
    var note = document.createElement("span");
    note.className = "note";
    var button = document.createElement("button");
    button.type = "button";
    button.className = "big";
    setText(button, "returns.open");
    button.addEventListener("click", function () {
      var opened = button.dataset.step === "opened";
      var action = opened ? "confirm" : "open";
      api("POST", "/api/courier/returns/" + encodeURIComponent(item.parcel_id) + "/" + action).then(function (answer) {
        if (courierExpired(answer, $("returns-message"))) { return; }
        if (answer.status === 200 && !opened) {
          button.dataset.step = "opened";
          setText(button, "returns.collected");
          setText(note, "returns.opened", { label: item.compartment });
        } else if (answer.status === 200) {
          button.remove();
          setText(note, "returns.done");
        } else if (answer.data.error === "door_open") {
          setText(note, "deposit.close_first", { label: item.compartment });
        } else if (answer.status === 503) {
          setText(note, "problem.pickup", { label: item.compartment });
        } else {
          setText(note, "common.error");
        }
      });
    });
    row.appendChild(where);
    row.appendChild(what);
    row.appendChild(note);
    row.appendChild(button);
    return row;
  }

  // Wiring that every screen shares

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-goto]");
    if (!target) { return; }
    if (target.dataset.goto === "home") { goHome(); } else { show(target.dataset.goto); }
  });

  $("lang-toggle").addEventListener("click", function () {
    setLanguage(state.lang === "en" ? "es" : "en");
  });

  $("a11y-toggle").addEventListener("click", function () { setA11y(!state.a11y); });

  document.addEventListener("keydown", function (event) {
    if (state.screen !== "pickup") { return; }
    if (/^[0-9]$/.test(event.key)) {
      state.pickupCode = edit(state.pickupCode, event.key, config.codeDigits);
    } else if (event.key === "Backspace") {
      state.pickupCode = edit(state.pickupCode, "back", config.codeDigits);
    } else if (event.key === "Enter") {
      // Enter on a focused button presses that button (a key of the keypad, Back), not Open.
      if (event.target.closest && event.target.closest("button")) { return; }
      $("pickup-submit").click();
      return;
    } else {
      return;
    }
    renderCode();
  });

  // What the other screens' scripts (dropoff.js, overflow.js, loaded after this one) build on.
  window.Kiosk = {
    $: $, t: t, api: api, show: show, goHome: goHome, setText: setText, clearText: clearText,
    announce: announce, state: state, config: config, enter: ENTER, announced: ANNOUNCED,
    courierScreens: COURIER_SCREENS, showProblem: showProblem, showLocked: showLocked,
    courierExpired: courierExpired, bindKeypad: bindKeypad, edit: edit,
    showDoorOpen: showDoorOpen, renderDoorMap: renderDoorMap, homeScreen: homeScreen
  };

  applyLanguage();
  show("home");
  loadLayout();
})();
