// gRPC server reflection (v1 and v1alpha) over GuestService and health, so grpcurl and
// `buf curl` can list and call the agent with no .proto at hand.
import { type DescFile, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { file_guest_guest, file_health_v1_health } from "@guestkit/protocol";

/** Adds the reflection services to a server. */
export function addReflection(server: grpc.Server): void {
  const packages = {
    "guest.GuestService": { fileDescriptorProtos: generatedFileProtos(file_guest_guest) },
    "grpc.health.v1.Health": { fileDescriptorProtos: generatedFileProtos(file_health_v1_health) },
  };
  new ReflectionService(packages as unknown as ConstructorParameters<typeof ReflectionService>[0]).addToServer(server);
}

// The generated file and everything it imports, serialized as reflection sends them.
function generatedFileProtos(file: DescFile): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  const visit = (f: DescFile): void => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const dependency of f.dependencies) visit(dependency);
    out.push(Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  };
  visit(file);
  return out;
}
