// A bulk label change's page: advance the job a batch per request until it is done, updating the progress
// bar, then reload the page for the outcome. Without this script the Continue button advances one batch.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("job-advance");
    if (!form) {
        return;
    }
    const bar = document.getElementById("job-progress-bar");
    const text = document.getElementById("job-progress-text");
    const step = async () => {
        const response = await fetch(form.action, {
            method: "POST",
            body: new FormData(form),
            headers: {"Accept": "application/json"},
            credentials: "same-origin",
        });
        if (!response.ok) {
            text.textContent = "Stopped: the server answered " + response.status + ". Continue to try again.";
            form.hidden = false;
            return;
        }
        const progress = await response.json();
        bar.max = progress.total;
        bar.value = progress.done;
        text.textContent = progress.summary;
        if (progress.finished) {
            window.location.reload();
        } else {
            step();
        }
    };
    form.hidden = true;
    step();
});
