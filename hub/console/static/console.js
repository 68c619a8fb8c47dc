// Duty console glue: account sign-in, CSRF header, live events, actions, errors, language.
// Panels are server-rendered partials loaded by htmx; this file only wires them together.
// The session is an HttpOnly cookie the browser sends by itself; this script never sees it.
// Writes carry the session's CSRF token (from /api/me or the sign-in answer), kept in memory.
(function () {
  "use strict";
  var L = JSON.parse(document.getElementById("i18n").textContent);
  var csrf = "";
  var me = null;
  var source = null;
  var connectedOnce = false;
  var body = document.body;

  function $(id) { return document.getElementById(id); }
  function fire(name, detail) { if (window.htmx) htmx.trigger(body, name, detail || {}); }
  function csrfHeaders() { return csrf ? { "X-CSRF-Token": csrf } : {}; }

  // -- errors and toasts ---------------------------------------------------------------------
  function detailMessage(text) {
    try {
      var parsed = JSON.parse(text);
      var d = parsed.detail !== undefined ? parsed.detail : parsed;
      if (typeof d === "string") return d;
      if (Array.isArray(d)) return d.map(function (x) { return x.msg || String(x); }).join("; ");
      if (d && d.message) return d.message;
    } catch (e) { /* not JSON */ }
    return (text || "").slice(0, 200);
  }

  function toast(text, kind) {
    var box = $("toasts");
    var dup = Array.prototype.find.call(box.children, function (n) { return n.textContent === text; });
    if (dup) return;
    var node = document.createElement("div");
    node.className = "toast " + (kind || "ok");
    node.setAttribute("role", kind === "error" ? "alert" : "status");
    node.textContent = text;
    box.appendChild(node);
    setTimeout(function () { node.remove(); }, kind === "error" ? 10000 : 4000);
  }

  function showError(status, text) {
    var msg = detailMessage(text);
    if (status === 401) {
      toast("401 · " + L.err_401 + (msg ? " (" + msg + ")" : ""), "error");
      signOut(false);
      showLogin(L.err_401);
      return;
    }
    var label = { 403: L.err_403, 409: L.err_409 }[status] || L.err_other;
    toast(status + " · " + label + ": " + msg, "error");
  }

  // -- htmx: partial requests carry the session cookie; writes also the CSRF token -----------
  body.addEventListener("htmx:configRequest", function (e) {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf;
  });
  body.addEventListener("htmx:responseError", function (e) {
    showError(e.detail.xhr.status, e.detail.xhr.responseText);
  });
  body.addEventListener("htmx:sendError", function () { toast(L.err_network, "error"); });

  // -- actions: JSON (or CSV) to the API with the session's CSRF token -------------------------
  function post(url, payload, method) { return send(method || "POST", url, payload); }

  function send(method, url, payload, contentType) {
    var form = payload instanceof FormData; // multipart (evidence): the browser sets the type
    var type = form ? {} : { "Content-Type": contentType || "application/json" };
    return fetch(url, {
      method: method,
      headers: Object.assign(type, csrfHeaders()),
      credentials: "same-origin",
      body: method === "DELETE" ? undefined
        : form || contentType ? payload : JSON.stringify(payload || {}),
    }).then(function (r) {
      return r.text().then(function (text) {
        if (!r.ok) { showError(r.status, text); return null; }
        fire("hub:refresh");
        return text ? JSON.parse(text) : {};
      });
    }, function () { toast(L.err_network, "error"); return null; });
  }

  var dialogSpec = null;
  function openDialog(spec) {
    dialogSpec = spec;
    $("action-title").textContent = spec.title;
    var fields = $("action-fields");
    fields.textContent = "";
    if (spec.intro) {
      var p = document.createElement("p");
      p.textContent = spec.intro;
      fields.appendChild(p);
    }
    (spec.fields || []).forEach(function (f, i) {
      var label = document.createElement("label");
      label.textContent = f.label;
      label.htmlFor = "action-field-" + i;
      var input;
      if (f.options) { // a picker: [value, label] pairs (departments, grades, evidence kinds)
        input = document.createElement("select");
        f.options.forEach(function (o) {
          var option = document.createElement("option");
          option.value = o[0];
          option.textContent = o[1];
          input.appendChild(option);
        });
      } else {
        input = document.createElement(f.multiline ? "textarea" : "input");
        if (f.type) input.type = f.type;
        if (f.accept) input.accept = f.accept;
      }
      input.id = "action-field-" + i;
      input.name = f.name;
      input.required = !!f.required;
      if (f.value) input.value = f.value;
      if (f.type) input.type = f.type;
      fields.appendChild(label);
      fields.appendChild(input);
    });
    $("action-dialog").showModal();
    var first = fields.querySelector("input, textarea");
    if (first) first.focus();
  }

  $("action-form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (!dialogSpec) return;
    var spec = dialogSpec;
    var payload = spec.multipart ? new FormData() : Object.assign({}, spec.extra || {});
    $("action-fields").querySelectorAll("input, textarea, select").forEach(function (el) {
      if (el.type === "file") { if (el.files.length) payload.append(el.name, el.files[0]); return; }
      if (el.value.trim() === "") return;
      if (spec.multipart) { payload.append(el.name, el.value.trim()); return; }
      var path = el.name.split("."), node = payload;  // "match.device_id" nests
      path.slice(0, -1).forEach(function (key) { node = node[key] = node[key] || {}; });
      node[path[path.length - 1]] = el.value.trim();
    });
    $("action-send").disabled = true;
    post(spec.url, payload).then(function (ok) {
      $("action-send").disabled = false;
      if (ok) { $("action-dialog").close(); toast(spec.done || L.done); }
    });
  });
  $("action-cancel").addEventListener("click", function () { $("action-dialog").close(); });

  document.addEventListener("click", function (e) {
    var button = e.target.closest("[data-post]");
    if (button) {
      e.preventDefault();
      button.disabled = true;
      post(button.dataset.post, {}).then(function (ok) {
        button.disabled = false;
        if (ok) toast(button.dataset.done || L.done);
      });
      return;
    }
    var remover = e.target.closest("[data-delete]");
    if (remover) {
      e.preventDefault();
      remover.disabled = true;
      post(remover.dataset.delete, {}, "DELETE").then(function (ok) {
        remover.disabled = false;
        if (ok) toast(remover.dataset.done || L.done);
      });
      return;
    }
    var opener = e.target.closest("[data-dialog]");
    if (opener) { e.preventDefault(); openDialog(JSON.parse(opener.dataset.dialog)); }
  });

  // -- evidence: thumbnails and photos load with the session cookie; a click shows one whole --
  document.addEventListener("click", function (e) {
    var thumb = e.target.closest("[data-photo]");
    if (!thumb) return;
    e.preventDefault();
    if (thumb.dataset.media === "application/pdf") { window.open(thumb.dataset.photo); return; }
    var img = $("photo-full");
    img.src = thumb.dataset.photo;
    $("photo-caption").textContent = thumb.title || "";
    $("photo-dialog").showModal();
  });
  if ($("photo-close")) $("photo-close").addEventListener("click", function () { $("photo-dialog").close(); });

  // -- reports page: downloads go through fetch (errors become toasts, not error pages) -----
  document.addEventListener("submit", function (e) {
    var form = e.target.closest("form[data-report]");
    if (!form) return;
    e.preventDefault();
    var params = new URLSearchParams(new FormData(form));
    var url = form.dataset.report + "?" + params.toString();
    fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { return r.text().then(function (t) { showError(r.status, t); }); }
      return r.blob().then(function (blob) {
        var a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = "hazards-" + params.get("site") + "-" + (params.get("month") || params.get("quarter")) + "." + params.get("format");
        document.body.appendChild(a);
        a.click();
        a.remove();
        toast(L.done);
      });
    }, function () { toast(L.err_network, "error"); });
  });

  // -- devices page: add, edit, retire, import ------------------------------------------------
  function deviceForm() { return $("device-form"); }

  function resetDeviceForm() {
    var form = deviceForm();
    if (!form) return;
    form.reset();
    delete form.dataset.editing;
    form.elements.id.disabled = false;
    $("device-form-title").textContent = $("device-form-title").dataset.add;
  }

  function showSecret(id, password) {
    $("device-secret-id").textContent = id;
    $("device-secret-value").textContent = password;
    $("device-secret").hidden = false;
  }

  document.addEventListener("submit", function (e) {
    var form = e.target.closest("form[data-device-form]");
    if (form) {
      e.preventDefault();
      var data = {};
      Array.prototype.forEach.call(form.elements, function (el) {
        if (!el.name || el.disabled) return;
        var value = el.value.trim();
        if (value === "") { if (form.dataset.editing) data[el.name] = null; return; }
        data[el.name] = (el.name === "lat" || el.name === "lon") && !isNaN(Number(value)) ? Number(value) : value;
      });
      var editing = form.dataset.editing;
      var request = editing
        ? send("PATCH", "/api/devices/" + encodeURIComponent(editing), data)
        : send("POST", "/api/devices", data);
      request.then(function (result) {
        if (!result) return;
        if (result.mqtt_password) showSecret(result.id, result.mqtt_password);
        resetDeviceForm();
        toast(L.done);
      });
      return;
    }
    var importer = e.target.closest("form[data-import-form]");
    if (importer) {
      e.preventDefault();
      send("POST", "/api/devices/import", importer.elements.csv.value, "text/csv").then(function (result) {
        if (!result) return;
        var secrets = result.mqtt_passwords || {};
        var ids = Object.keys(secrets);
        if (ids.length) showSecret(ids.join(", "), ids.map(function (k) { return secrets[k]; }).join(", "));
        toast(L.done + ": +" + result.added + " / ~" + result.updated);
      });
    }
  });

  document.addEventListener("click", function (e) {
    var edit = e.target.closest("[data-edit-device]");
    if (edit) {
      var device = JSON.parse(edit.dataset.editDevice);
      var form = deviceForm();
      Object.keys(device).forEach(function (key) {
        if (form.elements[key]) form.elements[key].value = device[key] === null ? "" : device[key];
      });
      form.dataset.editing = device.id;
      form.elements.id.disabled = true;
      $("device-form-title").textContent = $("device-form-title").dataset.edit + " " + device.id;
      form.scrollIntoView({ block: "nearest" });
      return;
    }
    var retire = e.target.closest("[data-retire-device]");
    if (retire) {
      if (!window.confirm(L.confirm_retire)) return;
      send("DELETE", "/api/devices/" + encodeURIComponent(retire.dataset.retireDevice)).then(function (ok) {
        if (ok) toast(L.done);
      });
      return;
    }
    if (e.target.id === "device-form-cancel") resetDeviceForm();
  });

  // -- live events ----------------------------------------------------------------------------
  function setLive(on) { $("live").classList.toggle("off", !on); }

  function connect() {
    if (source) source.close();
    source = new EventSource("/api/events"); // the session cookie goes along, no token in URLs
    source.addEventListener("hello", function () {
      setLive(true);
      if (connectedOnce) fire("hub:refresh"); // we may have missed events while away
      connectedOnce = true;
    });
    source.addEventListener("alarm", function (e) { fire("hub:alarm", { items: JSON.parse(e.data) }); });
    source.addEventListener("device", function (e) { fire("hub:device", { items: JSON.parse(e.data) }); });
    source.addEventListener("patrol", function (e) { fire("hub:patrol", { items: JSON.parse(e.data) }); });
    source.addEventListener("hazard", function (e) { fire("hub:hazard", { items: JSON.parse(e.data) }); });
    source.addEventListener("resync", function () { fire("hub:refresh"); });
    source.onerror = function () {
      setLive(false);
      if (source.readyState === EventSource.CLOSED) setTimeout(start, 5000);
    };
  }

  // -- sign in / out ------------------------------------------------------------------------
  function showLogin(message) {
    $("main").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("login-username").focus();
  }

  function signOut(reload) {
    if (reload) {
      fetch("/api/logout", { method: "POST", credentials: "same-origin", headers: csrfHeaders() })
        .then(function () { location.reload(); }, function () { location.reload(); });
    }
    csrf = "";
    me = null;
    if (source) { source.close(); source = null; }
    setLive(false);
    $("who").hidden = true;
    $("sign-out").hidden = true;
  }

  function whoami() {
    return fetch("/api/me", { credentials: "same-origin" });
  }

  function begin(user) {
    me = user;
    csrf = user.csrf_token || "";
    body.dataset.role = user.role;
    $("who-name").textContent = user.name;
    $("who-role").textContent = L["role_" + user.role] || user.role;
    $("who-sites").textContent = user.sites ? user.sites.join(", ") : L.sites_all;
    $("devices-link").hidden = user.role !== "admin";
    $("who").hidden = false;
    $("sign-out").hidden = !csrf;
    $("login").hidden = true;
    $("main").hidden = false;
    connect();
    fire("hub:ready");
  }

  function start() {
    whoami().then(function (r) {
      if (r.status === 401) { signOut(false); showLogin(""); return; }
      if (!r.ok) { toast(L.err_other + " " + r.status, "error"); setTimeout(start, 5000); return; }
      var token = r.headers.get("X-CSRF-Token");
      return r.json().then(function (user) { user.csrf_token = token || ""; begin(user); });
    }, function () { toast(L.err_network, "error"); setTimeout(start, 5000); });
  }

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var payload = { username: $("login-username").value.trim(), password: $("login-password").value };
    fetch("/api/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
    }).then(function (r) {
      if (!r.ok) {
        r.text().then(function (text) {
          var label = r.status === 429 ? L.err_locked : r.status === 401 ? L.err_login : L.err_other;
          $("login-error").textContent = r.status + " · " + label + " (" + detailMessage(text) + ")";
        });
        return;
      }
      $("login-password").value = "";
      return r.json().then(begin);
    }, function () { $("login-error").textContent = L.err_network; });
  });
  $("sign-out").addEventListener("click", function () { signOut(true); });

  $("lang-switch").addEventListener("click", function (e) {
    var lang = e.currentTarget.dataset.lang;
    document.cookie = "hub_lang=" + lang + "; path=/; max-age=31536000; samesite=lax";
    location.reload();
  });

  setInterval(function () { if (me && !document.hidden) fire("hub:tick"); }, 30000);
  start();
})();
