// The desk console: a thin page over the desk API. The token lives in this tab only.
"use strict";

const TOKEN_KEY = "yijing.desk.token";
const $ = (selector) => document.querySelector(selector);

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const error = new Error(body && body.error ? body.error.message : `请求失败（${response.status}）`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function cell(value) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : typeof value === "object" ? (value.name || JSON.stringify(value)) : String(value);
  return td;
}

function table(rows, columns) {
  const element = document.createElement("table");
  const head = element.createTHead().insertRow();
  columns.forEach(([, label]) => { const th = document.createElement("th"); th.textContent = label; head.appendChild(th); });
  const body = element.createTBody();
  rows.forEach((row) => { const tr = body.insertRow(); columns.forEach(([key]) => tr.appendChild(cell(row[key]))); });
  return element;
}

// Each tab lists what one desk endpoint returns; a tab whose endpoint is not deployed says so.
const TABS = [
  { label: "辖区", load: async () => table(await api("/api/v1/desk/jurisdictions"), [["name", "名称"], ["level", "层级"], ["code", "区划代码"]]) },
  { label: "志愿者审核", load: async () => table((await api("/api/v1/desk/volunteers?status=pending")).items, [["id", "编号"], ["name_masked", "姓名"], ["category", "类别"], ["employer", "单位"], ["status", "状态"]]) },
  { label: "线索研判", load: async () => table((await api("/api/v1/desk/clues")).items, [["id", "编号"], ["category", "类别"], ["status", "状态"], ["created_at", "提交时间"]]) },
  { label: "巡逻任务", load: async () => table((await api("/api/v1/desk/tasks")).items, [["id", "编号"], ["title", "标题"], ["status_label", "状态"], ["starts_at", "开始"]]) },
];

async function showTab(index) {
  document.querySelectorAll("#tabs button").forEach((b, i) => b.classList.toggle("active", i === index));
  const panel = $("#panel");
  panel.textContent = "加载中…";
  try {
    const content = await TABS[index].load();
    panel.replaceChildren(content);
  } catch (error) {
    panel.textContent = error.status === 404 ? "此功能尚未开放。" : error.message;
    if (error.status === 401) logout();
  }
}

async function enter() {
  const me = await api("/api/v1/me");
  $("#who").textContent = `${me.display_name}（${me.grants.map((g) => `${g.role}·${g.jurisdiction.name}`).join("，")}）`;
  $("#login").hidden = true;
  $("#desk").hidden = false;
  $("#logout").hidden = false;
  $("#tabs").replaceChildren(...TABS.map((tab, i) => {
    const button = document.createElement("button");
    button.textContent = tab.label;
    button.addEventListener("click", () => showTab(i));
    return button;
  }));
  showTab(0);
}

function logout() {
  api("/api/v1/desk/auth/logout", { method: "POST" }).catch(() => {});
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const body = await api("/api/v1/desk/auth/login", {
      method: "POST",
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    sessionStorage.setItem(TOKEN_KEY, body.token);
    await enter();
  } catch (error) {
    $("#login-error").textContent = error.message;
  }
});
$("#logout").addEventListener("click", logout);
if (sessionStorage.getItem(TOKEN_KEY)) enter().catch(logout);
