// gRPC server reflection (v1 and v1alpha) over GuestService, health and reflection
// itself, so grpcurl and `buf curl` can list and call the agent with no .proto at hand.

import type { DescFile as GenFile } from "@bufbuild/protobuf";
import { toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { file_guest_guest } from "@guestkit/protocol";
import { protoPath as healthProtoPath } from "grpc-health-check";

/** Adds the reflection services to a server. */
export function addReflection(server: grpc.Server): void {
  const health = loadSync(healthProtoPath);
  const packages = {
    ...health,
    "guest.GuestService": { fileDescriptorProtos: fileDescriptorProtos(file_guest_guest) },
  };
  new ReflectionService(packages as unknown as ConstructorParameters<typeof ReflectionService>[0]).addToServer(server);
}

// The generated file and everything it imports, serialized as reflection sends them.
function fileDescriptorProtos(file: GenFile): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  const visit = (f: GenFile): void => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const dependency of f.dependencies) visit(dependency);
    out.push(Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  };
  visit(file);
  return out;
}
