// The status page's live part: training and pre-annotation jobs with a progress bar and ETA, polled every
// 2 s from the backend's own JSON endpoints (GET /training, GET /preannotation). Text goes in through
// textContent only, never as markup: job errors and versions come from outside.
(function () {
  "use strict";
  var box = document.getElementById("jobs");
  if (!box) return;
  var project = box.dataset.project;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    seconds = Math.round(seconds);
    return seconds >= 60 ? Math.floor(seconds / 60) + " min " + (seconds % 60) + " s" : seconds + " s";
  }

  function row(kind, text, done, total, eta, state) {
    var div = document.createElement("div");
    div.className = "job " + kind + " " + state;
    var bar = document.createElement("progress");
    if (total) { bar.max = total; bar.value = done; }
    var label = document.createElement("span");
    label.textContent = " " + text + (total ? " — " + done + "/" + total : "") +
      (state === "running" && eta ? ", about " + duration(eta) + " left" : "");
    if (state !== "running" && state !== "starting") bar.hidden = true;
    div.append(bar, label);
    return div;
  }

  function training(status) {
    var jobs = status.running.concat(status.recent.slice(0, 5));
    return jobs.filter(function (job) { return !project || job.project === project; }).map(function (job) {
      var p = job.progress || {};
      var text = "training " + job.id + " (project " + job.project + "): " + job.state +
        (p.phase ? ", " + p.phase : "") + (job.error ? ": " + job.error : "") +
        (job.summary ? ": version " + job.summary.version + ", " + job.summary.reason : "");
      return row("training", text, p.step || 0, p.total_steps || 0, p.eta_s, job.state);
    });
  }

  function preannotation(status) {
    return status.jobs.map(function (job) {
      var text = "pre-annotation " + job.job + " (project " + job.project + ", version " + job.version + "): " +
        job.state + (job.error ? ": " + job.error : "") + (job.skipped ? ", " + job.skipped + " skipped" : "");
      return row("preannotation", text, job.done || 0, job.total || 0, job.eta_s, job.state);
    });
  }

  function get(url) {
    return fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"}).then(function (answer) {
      if (!answer.ok) throw new Error(url + ": HTTP " + answer.status);
      return answer.json();
    });
  }

  function poll() {
    var query = project ? "?project=" + encodeURIComponent(project) : "";
    Promise.all([get(box.dataset.training), get(box.dataset.preannotation + query)]).then(function (answers) {
      var rows = training(answers[0]).concat(preannotation(answers[1]));
      if (!rows.length) {
        var none = document.createElement("p");
        none.className = "empty";
        none.textContent = "no training or pre-annotation job since this server started";
        rows = [none];
      }
      box.replaceChildren.apply(box, rows);
      box.dataset.loaded = "true";
    }).catch(function (error) {
      box.replaceChildren(document.createTextNode("jobs unavailable: " + error.message));
    }).finally(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
