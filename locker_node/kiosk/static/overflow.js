/* Overflow: a parcel with no usable door here goes to a nearby locker, asked of central. The
   courier sees the lockers with room, picks one, and is told where to take the parcel; with
   central unreachable the screen says so, and the parcel stays with the courier. */
(function () {
  "use strict";

  var K = window.Kiosk;
  var $ = K.$;
  var SIZES = ["S", "M", "L", "XL"];
  // What each refusal says on the overflow screen; anything else is "Something went wrong".
  var REFUSALS = {
    central_unreachable: "overflow.offline",
    no_capacity: "overflow.full",
    door_open: "overflow.close_first",
    not_redirectable: "overflow.not_movable",
    no_reservation: "overflow.not_movable",
    same_bank: "overflow.not_movable",
    reservation_expired: "scan.expired"
  };
  // The parcel on offer: its tracking number, the class it needs (null: the one reserved), the
  // screen it came from and the message there that the offer sits under.
  var offer = null;

  K.courierScreens.push("overflow", "overflow-done");
  K.announced.push("overflow-done");

  function nextSize(size) {
    var at = SIZES.indexOf(size);
    return at >= 0 && at + 1 < SIZES.length ? SIZES[at + 1] : null;
  }

  // The "Nearby lockers" button, under the message of the screen that refused the deposit.
  function offerButton(message) {
    var id = message.id + "-overflow";
    var button = $(id);
    if (!button) {
      button = document.createElement("button");
      button.type = "button";
      button.id = id;
      button.className = "big";
      button.dataset.overflowOffer = "";
      K.setText(button, "overflow.offer");
      button.addEventListener("click", function () { K.show("overflow"); });
      message.insertAdjacentElement("afterend", button);
    }
    button.hidden = false;
  }

  function withdraw() {
    document.querySelectorAll("[data-overflow-offer]").forEach(function (button) {
      button.hidden = true;
    });
  }

  // kiosk.js calls this where a deposit is refused for want of a door: `tooSmallFor` is the
  // class the parcel did not fit (a larger one is needed), or null when its own class is full.
  K.offerOverflow = function (tracking, tooSmallFor, message) {
    var size = null;
    if (tooSmallFor) {
      size = nextSize(tooSmallFor);
      if (!size) { return; }  // too big for the largest class: no locker takes it
    }
    offer = { tracking: tracking, size: size, back: K.state.screen, message: message };
    offerButton(message);
  };

  // A new scan, another deposit, any other button: the offer was for what came before.
  function beforeEnter(screen, run) {
    var previous = K.enter[screen];
    K.enter[screen] = function () { run(); if (previous) { previous(); } };
  }
  beforeEnter("courier-scan", withdraw);
  beforeEnter("deposit", withdraw);
  ["screen-courier-scan", "screen-deposit"].forEach(function (id) {
    $(id).addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (button && !button.hasAttribute("data-overflow-offer")) { withdraw(); }
    });
  });
  $("scan-input").addEventListener("input", withdraw);

  // Refusals: said on the screen (its message is an alert), and true; false for a 200.
  function refused(answer) {
    var message = $("overflow-message");
    if (answer.status === 200) { return false; }
    if (answer.data.error === "central_unreachable") {
      K.setText(message, "overflow.offline");
      return true;
    }
    if (K.courierExpired(answer, message)) { return true; }
    K.setText(message, REFUSALS[answer.data.error] || "common.error", {
      label: answer.data.compartment || ""
    });
    return true;
  }

  function distance(km) {
    return Number(km).toLocaleString(K.state.lang, { maximumFractionDigits: 1 });
  }

  function part(className, text) {
    var span = document.createElement("span");
    span.className = className;
    if (text !== undefined) { span.textContent = text; }
    return span;
  }

  // One button a locker: its name, address, distance and free doors are the button's name.
  function bankRow(bank) {
    var row = document.createElement("li");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "big bank-choice";
    button.dataset.bank = bank.bank_id;
    var facts = part("bank-facts");
    var away = part("bank-away");
    var free = part("bank-free");
    K.setText(away, "overflow.away", { km: distance(bank.distance_km) });
    K.setText(free, "overflow.free", { free: bank.free });
    facts.appendChild(away);
    facts.appendChild(part("visually-hidden", ", "));
    facts.appendChild(free);
    button.appendChild(part("bank-name", bank.name));
    button.appendChild(part("visually-hidden", ", "));
    button.appendChild(part("bank-address", bank.address));
    button.appendChild(part("visually-hidden", ", "));
    button.appendChild(facts);
    button.addEventListener("click", function () { choose(bank); });
    row.appendChild(button);
    return row;
  }

  function loadBanks() {
    var list = $("overflow-list");
    list.textContent = "";
    var query = "?tracking_number=" + encodeURIComponent(offer.tracking) +
      (offer.size ? "&size=" + encodeURIComponent(offer.size) : "");
    K.api("GET", "/api/courier/overflow" + query).then(function (answer) {
      if (K.state.screen !== "overflow" || refused(answer)) { return; }
      var banks = answer.data.banks;
      if (!banks.length) { K.setText($("overflow-message"), "overflow.none"); }
      banks.forEach(function (bank) { list.appendChild(bankRow(bank)); });
    });
  }

  K.enter.overflow = function () {
    K.clearText($("overflow-message"));
    $("overflow-list").textContent = "";
    if (!offer) { K.show("courier-scan"); return; }
    K.setText($("overflow-lead"), "overflow.lead", { tracking: offer.tracking });
    loadBanks();
  };

  function choose(bank) {
    var body = { tracking_number: offer.tracking, bank_id: bank.bank_id };
    if (offer.size) { body.size = offer.size; }
    K.api("POST", "/api/courier/overflow", body).then(function (answer) {
      if (refused(answer)) {
        if (answer.data.error === "no_capacity") { loadBanks(); }  // the list has changed
        return;
      }
      // The deposit here (if any) was cancelled with the move: nothing is left to confirm.
      K.state.deposit = null;
      offer = null;
      withdraw();
      K.setText($("overflow-done-title"), "overflow.done_title", { name: answer.data.name });
      K.setText($("overflow-done-address"), "overflow.done_address", {
        address: answer.data.address
      });
      K.show("overflow-done");
    });
  }

  $("overflow-back").addEventListener("click", function () {
    var back = offer ? offer.back : "courier-scan";
    K.show(back);
    // Back at the open deposit, whose message still says why: the offer still stands.
    if (offer && back === "deposit") { offerButton(offer.message); }
  });
})();
