// Reading the API's answers, for every page: the one place that turns an
// error body (FastAPI's "detail", a text or a list of problems) into a message.

export class HttpError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

/** The JSON body of a response (null for 204); throws HttpError when it is not ok. */
export async function readJson(response) {
  if (response.status === 204) {
    return null;
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new HttpError(response.status, detailOf(data) || response.statusText);
  }
  return data;
}

function detailOf(data) {
  if (!data) {
    return "";
  }
  if (typeof data.detail === "string") {
    return data.detail;
  }
  if (Array.isArray(data.detail)) {
    return data.detail.map((d) => d.msg).join("; ");
  }
  return "";
}
