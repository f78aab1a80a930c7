// Cutting a text a peer sent to the length the receiver keeps.
//
// `text.slice(0, n)` is not enough: V8 represents a slice of 13 characters or more as a
// view (a SlicedString) that keeps its whole source alive, so a host that kept the first
// 4 KiB of a thousand 16 MiB paths would hold 16 GiB. The cut is therefore rebuilt as a
// string of its own. It goes through UTF-8 and back, which is exact for every string a
// protobuf decoder produces (they are decoded from UTF-8, so they hold no unpaired
// surrogate; the cut itself never splits a pair).

/**
 * The first `maxLength` UTF-16 code units of `text` (the last ones with `keep: "end"`),
 * or all of it when shorter, as a new string that does not keep `text` alive. A
 * surrogate pair at the cut is left out whole rather than split.
 */
export function cutText(text: string, maxLength: number, keep: "start" | "end" = "start"): string {
  let start = 0;
  let end = text.length;
  if (text.length > maxLength) {
    if (keep === "start") {
      end = maxLength;
      if (end > 0 && isHighSurrogate(text.charCodeAt(end - 1))) end -= 1;
    } else {
      start = text.length - maxLength;
      if (start < text.length && isLowSurrogate(text.charCodeAt(start))) start += 1;
    }
  }
  return Buffer.from(text.slice(start, end), "utf8").toString("utf8");
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}
