// Duty console glue: token login, htmx auth header, live events, actions, errors, language.
// Panels are server-rendered partials loaded by htmx; this file only wires them together.
(function () {
  "use strict";
  var L = JSON.parse(document.getElementById("i18n").textContent);
  var KEY = "hub_token";
  var token = localStorage.getItem(KEY) || "";
  var me = null;
  var source = null;
  var connectedOnce = false;
  var body = document.body;

  function $(id) { return document.getElementById(id); }
  function fire(name, detail) { if (window.htmx) htmx.trigger(body, name, detail || {}); }
  function authHeaders() { return token ? { Authorization: "Bearer " + token } : {}; }

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

  // -- htmx: every partial request carries the token ----------------------------------------
  body.addEventListener("htmx:configRequest", function (e) {
    if (token) e.detail.headers.Authorization = "Bearer " + token;
  });
  body.addEventListener("htmx:responseError", function (e) {
    showError(e.detail.xhr.status, e.detail.xhr.responseText);
  });
  body.addEventListener("htmx:sendError", function () { toast(L.err_network, "error"); });

  // -- actions: POST JSON to the API with the officer's token ---------------------------------
  function post(url, payload, method) {
    var form = payload instanceof FormData; // multipart (evidence): the browser sets the type
    return fetch(url, {
      method: method || "POST",
      headers: Object.assign(form ? {} : { "Content-Type": "application/json" }, authHeaders()),
      body: form ? payload : JSON.stringify(payload || {}),
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

  // -- evidence: images need the token, so they are fetched and shown as blob URLs -----------
  function fetchBlob(url) {
    return fetch(url, { headers: authHeaders() }).then(function (r) {
      if (!r.ok) throw new Error(String(r.status));
      return r.blob();
    });
  }
  function loadImages(root) {
    (root || document).querySelectorAll("img[data-src]").forEach(function (img) {
      var url = img.dataset.src;
      img.removeAttribute("data-src");
      fetchBlob(url).then(function (blob) { img.src = URL.createObjectURL(blob); },
                          function () { img.alt = "✗"; });
    });
  }
  body.addEventListener("htmx:afterSwap", function (e) { loadImages(e.target); });
  document.addEventListener("click", function (e) {
    var thumb = e.target.closest("[data-photo]");
    if (!thumb) return;
    e.preventDefault();
    var box = $("photo-dialog");
    var img = $("photo-full");
    img.removeAttribute("src");
    fetchBlob(thumb.dataset.photo).then(function (blob) {
      if (blob.type === "application/pdf") { window.open(URL.createObjectURL(blob)); return; }
      img.src = URL.createObjectURL(blob);
      $("photo-caption").textContent = thumb.title || "";
      box.showModal();
    }, function (err) { toast(L.err_other + " " + err.message, "error"); });
  });
  if ($("photo-close")) $("photo-close").addEventListener("click", function () { $("photo-dialog").close(); });

  // -- reports page: downloads carry the token, so they go through fetch --------------------
  document.addEventListener("submit", function (e) {
    var form = e.target.closest("form[data-report]");
    if (!form) return;
    e.preventDefault();
    var params = new URLSearchParams(new FormData(form));
    var url = form.dataset.report + "?" + params.toString();
    fetch(url, { headers: authHeaders() }).then(function (r) {
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

  // -- live events ----------------------------------------------------------------------------
  function setLive(on) { $("live").classList.toggle("off", !on); }

  function connect() {
    if (source) source.close();
    var url = "/api/events" + (token ? "?access_token=" + encodeURIComponent(token) : "");
    source = new EventSource(url);
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
    $("login-token").focus();
  }

  function signOut(reload) {
    localStorage.removeItem(KEY);
    token = "";
    me = null;
    if (source) { source.close(); source = null; }
    setLive(false);
    $("who").hidden = true;
    $("sign-out").hidden = true;
    if (reload) location.reload();
  }

  function whoami(candidate) {
    return fetch("/api/me", { headers: candidate ? { Authorization: "Bearer " + candidate } : {} });
  }

  function begin(user) {
    me = user;
    body.dataset.role = user.role;
    $("who-name").textContent = user.name;
    $("who-role").textContent = L["role_" + user.role] || user.role;
    $("who").hidden = false;
    $("sign-out").hidden = !token;
    $("login").hidden = true;
    $("main").hidden = false;
    connect();
    fire("hub:ready");
  }

  function start() {
    whoami(token).then(function (r) {
      if (r.status === 401) { signOut(false); showLogin(""); return; }
      if (!r.ok) { toast(L.err_other + " " + r.status, "error"); setTimeout(start, 5000); return; }
      return r.json().then(begin);
    }, function () { toast(L.err_network, "error"); setTimeout(start, 5000); });
  }

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var candidate = $("login-token").value.trim();
    whoami(candidate).then(function (r) {
      if (!r.ok) {
        r.text().then(function (text) { $("login-error").textContent = r.status + " · " + detailMessage(text); });
        return;
      }
      token = candidate;
      localStorage.setItem(KEY, token);
      $("login-token").value = "";
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
