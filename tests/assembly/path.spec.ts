import { pathIsAmbiguous } from "../../assembly/engine/path";
import { bytesOf } from "./helpers";

function ambiguous(p: string): bool {
  const b = bytesOf(p);
  return pathIsAmbiguous(b.dataStart, b.length);
}

describe("pathIsAmbiguous", () => {
  it("accepts plain paths, queries and names with dots", () => {
    expect(ambiguous("/")).toBe(false);
    expect(ambiguous("")).toBe(false);
    expect(ambiguous("/public/a.txt")).toBe(false);
    expect(ambiguous("/a/.../b")).toBe(false);
    expect(ambiguous("/a/.hidden/..b/b..")).toBe(false);
    expect(ambiguous("/a%20b/%41")).toBe(false);
    expect(ambiguous("/pkg.Svc/Method")).toBe(false);
    expect(ambiguous("/a?x=%2F&y=../z")).toBe(false); // the query is not the path
    expect(ambiguous("/a#..")).toBe(false);
    expect(ambiguous("/a;v=1/b")).toBe(false);
  });
  it("refuses escaped slashes and backslashes in any case", () => {
    expect(ambiguous("/public/..%2Fadmin/secret.txt")).toBe(true);
    expect(ambiguous("/%2Fadmin/x")).toBe(true);
    expect(ambiguous("/public%2F..%2Fadmin/x")).toBe(true);
    expect(ambiguous("/public%2f..%2fadmin")).toBe(true);
    expect(ambiguous("/a%5Cb")).toBe(true);
    expect(ambiguous("/a%5cb")).toBe(true);
    expect(ambiguous("/a\\b")).toBe(true);
  });
  it("refuses dot segments, plain, percent-encoded or with a path parameter", () => {
    expect(ambiguous("/public/%2E%2E%2Fadmin/secret.txt")).toBe(true);
    expect(ambiguous("/public/%2e%2e/admin")).toBe(true);
    expect(ambiguous("/public/.%2E/admin")).toBe(true);
    expect(ambiguous("/public/../admin")).toBe(true);
    expect(ambiguous("/public/./admin")).toBe(true);
    expect(ambiguous("/public/%2e/admin")).toBe(true);
    expect(ambiguous("/public/..")).toBe(true);
    expect(ambiguous("/public/.")).toBe(true);
    expect(ambiguous("/public/..?x")).toBe(true);
    expect(ambiguous("/public/..;/admin")).toBe(true);
    expect(ambiguous("/public/..;jsessionid=1/admin")).toBe(true);
    expect(ambiguous("/public/.;x/admin")).toBe(true);
  });
  it("does not read past the end of a short escape", () => {
    expect(ambiguous("/a%2")).toBe(false);
    expect(ambiguous("/a%")).toBe(false);
    expect(ambiguous("/%2E")).toBe(true);
  });
});
