// The console's login and logout: posts the forms to /auth/login and /auth/logout, then reloads.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const login = document.getElementById("login");
  if (login) {
    login.addEventListener("submit", async (event) => {
      event.preventDefault();
      const answer = await fetch("/auth/login", {method: "POST", body: new URLSearchParams(new FormData(login))});
      if (answer.ok) { window.location = "/console/"; return; }
      const body = await answer.json().catch(() => ({error: answer.statusText}));
      document.getElementById("login-problem").textContent = body.error;
    });
  }
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("submit", async (event) => {
      event.preventDefault();
      await fetch("/auth/logout", {method: "POST", headers: {"X-CSRF-Token": logout.csrf_token.value}});
      window.location = "/console/login";
    });
  }
});
